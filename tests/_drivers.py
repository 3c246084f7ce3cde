"""Drivers: one interface to pgqrs in Python and in Rust, for tests/test_scenarios.py.

Behaviour both languages must share is written once, as scenarios against a
``Driver``, and run against each driver (as River runs one driver suite
against every driver). ``PythonDriver`` calls the sync API in this process
and runs ``pgqrs.Worker`` on a thread; ``RustDriver`` runs
``rust/examples/conformance.rs``, one process per client action and one
long-lived ``serve`` process per worker.

Messages cross the interface as ``Msg`` (the fields of the Rust binary's
JSON), pgqrs errors as ``DriverError`` carrying the Python exception's name,
so a scenario compares the two languages' answers as plain values.

A worker's handler does what each payload says, the same in both languages:
``{"gate": PATH}`` waits until the file PATH exists (the test opens the gate
by creating it), ``{"sleep": S}`` waits S seconds; ``{"fail": N}`` fails (a retry with
the backoff) while the attempt is at most N; ``{"abort": TEXT}`` gives up
(dead at once); otherwise it returns ``{"result": X}``'s X, or with
``{"report": true}`` the attempt and the last error it saw.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pgqrs

RUST_DIR = Path(__file__).resolve().parents[1] / "rust"


def build_conformance_binary() -> Path:
    """Build rust/examples/conformance.rs (once per session: callers cache it)."""
    cargo = shutil.which("cargo")
    assert cargo, "cargo is required for the Rust conformance tests (install the Rust toolchain)"
    subprocess.run(
        [cargo, "build", "--quiet", "--example", "conformance"],
        cwd=RUST_DIR,
        check=True,
        timeout=900,
    )
    binary = RUST_DIR / "target" / "debug" / "examples" / "conformance"
    assert binary.exists()
    return binary


class DriverError(Exception):
    """A pgqrs error from either language; ``kind`` is the Python exception's name."""

    def __init__(self, kind: str, message: str, ids: list[int]) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.ids = ids


@dataclasses.dataclass(frozen=True)
class Msg:
    """A message as both drivers report it (the lease as text)."""

    id: int
    payload: Any
    priority: int
    attempts: int
    lease: str | None
    dedup_key: str | None
    headers: dict[str, Any]
    last_error: Any
    inserted: bool
    group: str | None = None


@dataclasses.dataclass
class Counters:
    """A stopped worker's counts of settled messages."""

    completed: int
    retried: int
    dead: int


class RunningWorker(abc.ABC):
    """A worker started by a driver; ``stop`` asks for a graceful stop."""

    pid: int

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask for a graceful stop (running handlers get the grace period); do not wait."""

    @abc.abstractmethod
    def wait(self, timeout: float = 30.0) -> Counters:
        """Wait for the worker to have stopped; its counters."""


class Driver(abc.ABC):
    """One language's pgqrs: producer and consumer actions, and a worker.

    Worker options use the Python names (``concurrency``, ``poll_interval``,
    ``grace_period``, ``heartbeat_interval``, ``prefetch``, ``poll_only``,
    ``visibility_timeout``, ``max_attempts``, ``backoff`` as a dict of
    ``base``/``max``/``jitter``).
    """

    name: str

    @abc.abstractmethod
    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int = 0,
        delay: float | None = None,
        dedup_key: str | None = None,
        headers: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> Msg: ...

    @abc.abstractmethod
    def dequeue_batch(self, queue: str, batch: int) -> tuple[list[Msg], float | None]:
        """Up to ``batch`` messages, and the dequeue's retry_after (rate limit)."""

    @abc.abstractmethod
    def enqueue_batch(
        self, queue: str, payloads: list[Any], *, dedup_keys: list[str | None] | None = None
    ) -> list[Msg]: ...

    @abc.abstractmethod
    def dequeue(self, queue: str, *, vt: float | None = None) -> Msg | None: ...

    @abc.abstractmethod
    def archive(
        self, queue: str, msg: Msg, *, status: str = "completed", result: Any = None
    ) -> None: ...

    @abc.abstractmethod
    def release(self, queue: str, msg: Msg) -> None: ...

    @abc.abstractmethod
    def delete(self, queue: str, msg: Msg) -> None: ...

    @abc.abstractmethod
    def start_worker(self, queue: str, **options: Any) -> RunningWorker: ...

    @abc.abstractmethod
    def cancel(self, msg_id: int) -> str:
        """Admin.cancel: "cancelled" or "cancel_requested" (else DriverError)."""

    @abc.abstractmethod
    def wait(self, msg_id: int, timeout: float) -> dict[str, Any]:
        """Admin.wait: the archived row's id, status, result and progress."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free what the driver holds, and stop any worker a failed scenario left running."""


# -- Python -----------------------------------------------------------------------


def _msg(m: pgqrs.Message) -> Msg:
    return Msg(
        id=m.id,
        payload=m.payload,
        priority=m.priority,
        attempts=m.attempts,
        lease=None if m.lease is None else str(m.lease),
        dedup_key=m.dedup_key,
        headers=m.headers,
        last_error=m.last_error,
        inserted=m.inserted,
        group=m.group,
    )


def _json_value(payload: Any) -> Any:
    """Python takes a str payload as JSON text; the drivers take JSON values."""
    return json.dumps(payload) if isinstance(payload, str) else payload


async def scripted(msg: pgqrs.Message) -> Any:
    """The Python worker's handler: does what the payload says (module docs)."""
    p = msg.payload if isinstance(msg.payload, dict) else {}
    if "gate" in p:
        while not os.path.exists(p["gate"]):
            await asyncio.sleep(0.02)
    if "sleep" in p:
        await asyncio.sleep(float(p["sleep"]))
    if "fail" in p and msg.attempts <= int(p["fail"]):
        raise pgqrs.Retry(reason=f"attempt {msg.attempts} failed")
    if "abort" in p:
        raise pgqrs.Abort(p["abort"])
    if p.get("report") is True:
        return {"attempts": msg.attempts, "last_error": msg.last_error}
    return p.get("result")


def _python_options(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if "backoff" in out:
        out["backoff"] = pgqrs.Backoff(**out["backoff"])
    return out


class _PythonWorker(RunningWorker):
    def __init__(self, config: pgqrs.Config, queue: str, options: dict[str, Any]) -> None:
        self.pid = os.getpid()
        self.worker = pgqrs.Worker(
            config, queues=[queue], handle_signals=False, **_python_options(options)
        )
        self.worker.handler(queue)(scripted)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"scenario-worker-{queue}")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # reported by wait()
            self.error = e

    def stop(self) -> None:
        self.worker.stop()

    def wait(self, timeout: float = 30.0) -> Counters:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the Python worker did not stop within {timeout}s"
        if self.error is not None:
            raise self.error
        c = self.worker.counters
        return Counters(completed=c.completed, retried=c.retried, dead=c.dead)


class PythonDriver(Driver):
    """pgqrs's sync API in this process; its worker on a thread."""

    name = "python"

    def __init__(self, config: pgqrs.Config) -> None:
        self.config = config
        self._producers: dict[str, pgqrs.Producer] = {}
        self._consumers: dict[str, pgqrs.Consumer] = {}
        #: Messages this driver dequeued, by (id, lease): settled with their own lease.
        self._held: dict[tuple[int, str | None], pgqrs.Message] = {}
        self._workers: list[_PythonWorker] = []

    def _producer(self, queue: str) -> pgqrs.Producer:
        if queue not in self._producers:
            self._producers[queue] = pgqrs.Producer(self.config, queue)
        return self._producers[queue]

    def _consumer(self, queue: str) -> pgqrs.Consumer:
        if queue not in self._consumers:
            self._consumers[queue] = pgqrs.Consumer(self.config, queue)
        return self._consumers[queue]

    def _call(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except pgqrs.Error as e:
            raise DriverError(type(e).__name__, str(e), list(getattr(e, "ids", []))) from e

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int = 0,
        delay: float | None = None,
        dedup_key: str | None = None,
        headers: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> Msg:
        m = self._call(
            lambda: self._producer(queue).enqueue(
                _json_value(payload),
                priority=priority,
                delay=delay,
                dedup_key=dedup_key,
                headers=headers,
                group=group,
            )
        )
        return _msg(m)

    def dequeue_batch(self, queue: str, batch: int) -> tuple[list[Msg], float | None]:
        consumer = self._consumer(queue)
        ms = self._call(lambda: consumer.dequeue(batch=batch))
        got = [_msg(m) for m in ms]
        for g, m in zip(got, ms, strict=True):
            self._held[(g.id, g.lease)] = m
        return got, consumer.retry_after

    def enqueue_batch(
        self, queue: str, payloads: list[Any], *, dedup_keys: list[str | None] | None = None
    ) -> list[Msg]:
        ms = self._call(
            lambda: self._producer(queue).enqueue_batch(
                [_json_value(p) for p in payloads], dedup_keys=dedup_keys
            )
        )
        return [_msg(m) for m in ms]

    def dequeue(self, queue: str, *, vt: float | None = None) -> Msg | None:
        m = self._call(lambda: self._consumer(queue).dequeue(visibility_timeout=vt))
        if m is None:
            return None
        got = _msg(m)
        self._held[(got.id, got.lease)] = m
        return got

    def _own(self, msg: Msg) -> pgqrs.Message:
        held = self._held.get((msg.id, msg.lease))
        assert held is not None, f"message {msg.id} was not dequeued by the Python driver"
        return held

    def archive(
        self, queue: str, msg: Msg, *, status: str = "completed", result: Any = None
    ) -> None:
        self._call(lambda: self._consumer(queue).archive(self._own(msg), status, result=result))

    def release(self, queue: str, msg: Msg) -> None:
        self._call(lambda: self._consumer(queue).release(self._own(msg)))

    def delete(self, queue: str, msg: Msg) -> None:
        self._call(lambda: self._consumer(queue).delete(self._own(msg)))

    def cancel(self, msg_id: int) -> str:
        with pgqrs.Admin(self.config) as admin:
            return str(self._call(lambda: admin.cancel(msg_id)))

    def wait(self, msg_id: int, timeout: float) -> dict[str, Any]:
        with pgqrs.Admin(self.config) as admin:
            a = self._call(lambda: admin.wait(msg_id, timeout=timeout))
        return {"id": a.id, "status": a.status, "result": a.result, "progress": a.progress}

    def start_worker(self, queue: str, **options: Any) -> RunningWorker:
        w = _PythonWorker(self.config, queue, options)
        self._workers.append(w)
        return w

    def close(self) -> None:
        for w in self._workers:  # a scenario that failed midway may leave one running
            if w.thread.is_alive():
                w.worker.stop()
                w.thread.join(30)
        for client in [*self._producers.values(), *self._consumers.values()]:
            client.close()


# -- Rust -------------------------------------------------------------------------


def _rust_msg(j: dict[str, Any]) -> Msg:
    return Msg(
        id=j["id"],
        payload=j["payload"],
        priority=j["priority"],
        attempts=j["attempts"],
        lease=j["lease"],
        dedup_key=j["dedup_key"],
        headers=j["headers"] or {},
        last_error=j["last_error"],
        inserted=j["inserted"],
        group=j.get("group"),
    )


class _RustWorker(RunningWorker):
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # serve's signal to stop gracefully
            self.proc.stdin = None  # closed: communicate() must not flush it

    def wait(self, timeout: float = 30.0) -> Counters:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(f"the Rust worker did not stop within {timeout}s") from None
        if self.proc.returncode == 2:
            e = json.loads(out)
            raise DriverError(e["error"], e["message"], e["ids"])
        assert self.proc.returncode == 0, f"conformance serve failed: {err}{out}"
        c = json.loads(out)
        return Counters(completed=c["completed"], retried=c["retried"], dead=c["dead"])


class RustDriver(Driver):
    """The Rust crate through rust/examples/conformance.rs."""

    name = "rust"

    def __init__(self, binary: Path, dsn: str, schema: str) -> None:
        self.binary = binary
        self.env = {**os.environ, "PGQRS_DSN": dsn, "PGQRS_SCHEMA": schema}
        self._workers: list[_RustWorker] = []

    def run(self, *args: object) -> Any:
        """One action of the binary: its JSON, or DriverError."""
        proc = subprocess.run(
            [str(self.binary), *map(str, args)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode == 2:
            e = json.loads(proc.stdout)
            raise DriverError(e["error"], e["message"], e["ids"])
        assert proc.returncode == 0, f"conformance {args} failed: {proc.stderr}{proc.stdout}"
        return json.loads(proc.stdout)

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int = 0,
        delay: float | None = None,
        dedup_key: str | None = None,
        headers: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> Msg:
        args: list[object] = ["enqueue", queue, json.dumps(payload), "--priority", priority]
        if group is not None:
            args += ["--group", group]
        if delay is not None:
            args += ["--delay", delay]
        if dedup_key is not None:
            args += ["--dedup", dedup_key]
        if headers is not None:
            args += ["--headers", json.dumps(headers)]
        return _rust_msg(self.run(*args))

    def enqueue_batch(
        self, queue: str, payloads: list[Any], *, dedup_keys: list[str | None] | None = None
    ) -> list[Msg]:
        args: list[object] = ["enqueue-batch", queue, json.dumps(payloads)]
        if dedup_keys is not None:
            args += ["--dedup-keys", json.dumps(dedup_keys)]
        return [_rust_msg(j) for j in self.run(*args)]

    def dequeue_batch(self, queue: str, batch: int) -> tuple[list[Msg], float | None]:
        got = self.run("dequeue-batch", queue, batch)
        return [_rust_msg(j) for j in got["messages"]], got["retry_after"]

    def dequeue(self, queue: str, *, vt: float | None = None) -> Msg | None:
        args: list[object] = ["dequeue", queue]
        if vt is not None:
            args += ["--vt", vt]
        got = self.run(*args)
        return None if got is None else _rust_msg(got)

    def archive(
        self, queue: str, msg: Msg, *, status: str = "completed", result: Any = None
    ) -> None:
        args: list[object] = ["archive", queue, msg.id, msg.lease, "--status", status]
        if result is not None:
            args += ["--result", json.dumps(result)]
        self.run(*args)

    def release(self, queue: str, msg: Msg) -> None:
        self.run("release", queue, msg.id, msg.lease)

    def delete(self, queue: str, msg: Msg) -> None:
        self.run("delete", queue, msg.id, msg.lease)

    def cancel(self, msg_id: int) -> str:
        return str(self.run("cancel", msg_id)["outcome"])

    def wait(self, msg_id: int, timeout: float) -> dict[str, Any]:
        got: dict[str, Any] = self.run("wait", msg_id, timeout)
        return got

    def start_worker(self, queue: str, **options: Any) -> RunningWorker:
        proc = subprocess.Popen(
            [str(self.binary), "serve", queue, "--options", json.dumps(options)],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        w = _RustWorker(proc)
        self._workers.append(w)
        return w

    def close(self) -> None:
        for w in self._workers:  # a scenario that failed midway may leave one running
            if w.proc.poll() is None:
                w.stop()
                try:
                    w.proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.communicate()

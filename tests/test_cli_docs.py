"""The README documents every configuration option, exit code and command (no drift)."""

from __future__ import annotations

from pathlib import Path

import click

from pgqrs import _config, _embedded
from pgqrs._cli import cli, exit_codes

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def _table_rows() -> list[str]:
    return [line for line in README.splitlines() if line.startswith("| ")]


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_environment_variable_and_default_is_in_the_config_table() -> None:
    rows = _table_rows()
    for option, var in _config.ENV_VARS.items():
        row = next((r for r in rows if r.startswith(f"| `{option}` |")), None)
        assert row is not None, f"README config table lacks option {option!r}"
        assert f"`{var}`" in row
        default = getattr(_config, f"DEFAULT_{option.upper()}", None)
        if default is not None:
            assert f"`{_shown(default)}`" in row, (option, default, row)
    assert any(f"`{_config.FALLBACK_DSN_ENV_VAR}`" in r for r in rows)
    for var in (_embedded.EMBEDDED_ENV_VAR, _embedded.EMBEDDED_DIR_ENV_VAR):
        assert any(f"`{var}`" in r for r in rows), var
    for name in ("visibility_timeout", "max_attempts"):
        row = next(r for r in rows if r.startswith(f"| `{name}` |"))
        assert _shown(getattr(_config, f"DEFAULT_{name.upper()}")) in row


def test_every_exit_code_is_documented() -> None:
    rows = _table_rows()
    for code in exit_codes.DESCRIPTIONS:
        assert any(r.startswith(f"| {code} |") for r in rows), code


def test_every_command_is_documented() -> None:
    def commands(group: click.Group, prefix: str) -> list[str]:
        names = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                names += commands(command, f"{prefix}{name} ")
            else:
                names.append(f"{prefix}{name}")
        return names

    table = "\n".join(_table_rows())
    for name in commands(cli, ""):
        group, _, sub = name.rpartition(" ")
        assert f"`{name}" in table or (group and sub in table and f"`{group} " in table), name

"""The documentation matches the code (no drift).

docs/configuration.md documents every configuration option and environment
variable, docs/cli.md every command and exit code, docs/worker.md every worker
option under its name in both languages; the README stays short, carries the
Quick Example verbatim and names the two commands CI runs; every relative link
in the README, CONTRIBUTING.md and docs/ points at a file that exists.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click

import pgqrs
from pgqrs import _config, _embedded
from pgqrs._cli import cli, exit_codes

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")
CLI = (DOCS / "cli.md").read_text(encoding="utf-8")
WORKER = (DOCS / "worker.md").read_text(encoding="utf-8")
#: The issue asks for a README a newcomer reads in five minutes.
README_MAX_BYTES = 8 * 1024
#: The Rust worker's options, as named in the Rust source.
OPTIONS_RS = ROOT / "rust" / "src" / "worker" / "options.rs"


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_environment_variable_and_default_is_in_the_config_table() -> None:
    rows = _table_rows(CONFIGURATION)
    for option, var in _config.ENV_VARS.items():
        row = next((r for r in rows if r.startswith(f"| `{option}` |")), None)
        assert row is not None, f"docs/configuration.md lacks option {option!r}"
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
    rows = _table_rows(CLI)
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

    table = "\n".join(_table_rows(CLI))
    for name in commands(cli, ""):
        group, _, sub = name.rpartition(" ")
        assert f"`{name}" in table or (group and sub in table and f"`{group} " in table), name


def _worker_option_rows() -> list[tuple[str, str]]:
    """(Python cell, Rust cell) of each row of docs/worker.md's option table."""
    section = WORKER[WORKER.index("## Options") :]
    rows = []
    for line in _table_rows(section)[1:]:  # after the header row
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) <= {"-"}:  # the separator row
            continue
        rows.append((cells[0], cells[1]))
    return rows


def _first_name(cell: str) -> str | None:
    """The option a cell names: its first backticked identifier, unless the
    cell says the language has no such option (it then starts with "(")."""
    if cell.startswith("("):
        return None
    match = re.search(r"`([a-z_]+)", cell)
    return match.group(1) if match else None


def test_every_python_worker_option_is_in_the_worker_table() -> None:
    params = set(inspect.signature(pgqrs.Worker.__init__).parameters) - {
        "self",
        "config",
        "queues",
    }
    documented = {_first_name(py) for py, _rust in _worker_option_rows()} - {None}
    documented.discard("worker")  # the per-handler row: @worker.handler(...)
    assert params - documented == set(), "options missing from docs/worker.md"
    assert documented - params == set(), "docs/worker.md names options Worker() lacks"


def _rust_worker_fields() -> set[str]:
    source = OPTIONS_RS.read_text(encoding="utf-8")
    body = source[source.index("pub struct WorkerOptions") :]
    body = body[: body.index("\n}")]
    fields = re.findall(r"^\s*pub ([a-z_]+):", body, re.M)
    assert fields, "no fields found in WorkerOptions"
    return set(fields)


def test_every_rust_worker_option_is_in_the_worker_table() -> None:
    documented: set[str] = set()
    for _py, rust in _worker_option_rows():
        documented |= (
            set(re.findall(r"`([a-z_]+)(?::|`)", rust)) if not rust.startswith("(") else set()
        )
    fields = _rust_worker_fields()
    assert fields - documented == set(), "WorkerOptions fields missing from docs/worker.md"
    assert documented - fields == set(), "docs/worker.md names fields WorkerOptions lacks"


def test_readme_is_short() -> None:
    size = len(README.encode("utf-8"))
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/"


def test_readme_carries_the_quick_example_verbatim() -> None:
    """The README shows examples/quickstart.py, which tests/test_core_seed.py runs."""
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert f"```python\n{example}```" in README


def test_readme_rust_example_is_the_compiled_one() -> None:
    """The README's Rust block is rust/examples/readme.rs (which cargo clippy
    --all-targets compiles): its `use` lines and the body of main, unindented."""
    block = re.search(r"```rust\n(.*?)```", README, re.S)
    assert block, "the README has no Rust example"
    source = (ROOT / "rust" / "examples" / "readme.rs").read_text(encoding="utf-8")
    uses = "".join(line + "\n" for line in source.splitlines() if line.startswith("use "))
    body = source[source.index("{\n", source.index("async fn main")) + 2 :]
    body = body[: body.index("    Ok(())\n}")]
    expected = (
        uses + "\n" + "".join((line[4:] if line else line) + "\n" for line in body.splitlines())
    )
    assert block.group(1) == expected


def test_readme_names_install_and_the_commands_ci_runs() -> None:
    assert "pip install pgqrs" in README
    assert 'pip install "pgqrs[embedded]"' in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for script in ("scripts/demo", "scripts/test"):
        assert f"\n{script} " in README, script
        assert script in ci, script
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert README.index("scripts/demo") < README.index("## Python")
    assert "seed" not in README.lower()


def test_embedded_docs_quote_the_missing_extra_error() -> None:
    embedded = (DOCS / "embedded.md").read_text(encoding="utf-8")
    assert _embedded.INSTALL_COMMAND in embedded


def test_relative_links_point_at_files() -> None:
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
            checked += 1
    assert checked >= 20, checked

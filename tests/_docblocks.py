"""The Python code blocks of the documentation, for tests that run or type-check them."""

from __future__ import annotations

import re
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(name: str) -> list[tuple[str, str]]:
    """``(heading, code)`` of each python block of docs/``name``, under its last
    ``##`` heading."""
    text = (DOCS / name).read_text(encoding="utf-8")
    out = []
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^##+ (.+)$", text[: match.start()], re.M)
        out.append((headings[-1] if headings else "", match[1]))
    return out


def block_under(name: str, heading_start: str) -> str:
    """The one python block of docs/``name`` under the heading starting so."""
    found = [code for heading, code in python_blocks(name) if heading.startswith(heading_start)]
    assert len(found) == 1, f"{name}: {len(found)} python blocks under {heading_start!r}"
    return found[0]


def run_block(code: str, module_name: str) -> types.ModuleType:
    """Execute a block as a module of its own; return it."""
    module = types.ModuleType(module_name)
    exec(compile(code, f"<{module_name}>", "exec"), module.__dict__)
    return module

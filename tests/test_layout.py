"""The package's shape (DESIGN.md, Layers): imports only point down, and modules stay small.

The layers themselves are declared once, in ``[tool.importlinter]`` of pyproject.toml; this test
runs ``lint-imports`` on them (``make lint`` runs the same check alone).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400  # a module over this holds more than one idea: split it by idea


def _lint_imports() -> str:
    """The ``lint-imports`` beside this interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).with_name("lint-imports")
    found = str(here) if here.is_file() else shutil.which("lint-imports")
    assert found, "lint-imports is not installed: pip install -e '.[dev]' (import-linter)"
    return found


def long_modules(package: Path, max_lines: int = MAX_LINES) -> dict[str, int]:
    """``{path relative to package's parent: line count}`` of the .py files over ``max_lines``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        with open(path, encoding="utf-8") as fh:
            n = sum(1 for _ in fh)
        if n > max_lines:
            out[str(path.relative_to(package.parent))] = n
    return out


def test_imports_only_point_down() -> None:
    run = subprocess.run([_lint_imports(), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (
        "lint-imports found imports that point up a layer (see [tool.importlinter] in "
        f"pyproject.toml and DESIGN.md, Layers):\n{run.stdout}\n{run.stderr}"
    )


def test_no_module_over_400_lines() -> None:
    long = long_modules(ROOT / "medssl")
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): " + ", ".join(
        f"{path} ({n} lines)" for path, n in long.items()
    )


def magic_lines(folder: Path) -> list[str]:
    """``path:line`` of every bare expression statement in the Streamlit pages under ``folder`` that
    Streamlit "magic" would render (anything but a call, a docstring or an await): a stray
    ``a if c else b`` there shows a DeltaGenerator's docstring on the page."""
    import ast

    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Expr) and not isinstance(node.value, (ast.Call, ast.Constant, ast.Await)):
                found.append(f"{path.relative_to(folder.parent)}:{node.lineno}")
    return found


def test_no_streamlit_magic_in_the_app(tmp_path: Path) -> None:
    assert magic_lines(ROOT / "apps") == []
    page = tmp_path / "apps" / "page.py"
    page.parent.mkdir()
    page.write_text('"""A page."""\nimport streamlit as st\nx = 1\nst.write(x)\nst.dataframe(x) if x else st.caption("none")\n')
    assert magic_lines(tmp_path / "apps") == ["apps/page.py:5"]

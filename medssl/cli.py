"""The ``medssl`` console entry point (``pyproject.toml`` [project.scripts]).

The parser and ``main`` live in ``medssl.commands.main`` so that a command (``medssl demo``)
can run other commands without importing upwards; this module re-exports them.
"""

from medssl.commands.main import COMMANDS, DESCRIPTION, build_parser, main

__all__ = ["COMMANDS", "DESCRIPTION", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

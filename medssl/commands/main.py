"""The ``medssl`` command line: the parser and ``main``; one module per subcommand.

``main(argv=None)`` returns the exit code, so tests call it directly. A user error
(``MedsslError``) prints one line on stderr and exits non-zero; it never shows a traceback.
Nor does a file the operating system refuses (``OSError``: an --out path under a file, no
permission, a full disk): it prints the system's message with the path, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn, Sequence

import medssl
from medssl.errors import MedsslError

# Each module defines ``register(subparsers)``; the parser it adds sets ``func=run``.
COMMANDS: tuple[str, ...] = (
    "medssl.commands.ingest",
    "medssl.commands.finetune",
    "medssl.commands.evaluate",
    "medssl.commands.label_efficiency",
    "medssl.commands.pretrain",
    "medssl.commands.methods",
    "medssl.commands.app",
    "medssl.commands.users",
    "medssl.commands.audit",
    "medssl.commands.score",
    "medssl.commands.demo",
    "medssl.commands.export",
)

DESCRIPTION = """\
Self-supervised learning for medical and sensor data.

The loop:  ingest -> pretrain (no labels) -> finetune (few labels) -> evaluate / score -> review.
Run `medssl COMMAND --help` for the options of one step.
"""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one stderr line (exit code 2), like every other
    medssl error: the problem and where the full usage is, without argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def command_name(module_name: str) -> str:
    """The subcommand a module of ``COMMANDS`` registers: its last name part, ``_`` written ``-``."""
    return module_name.rsplit(".", 1)[-1].replace("_", "-")


def _named_command(argv: Sequence[str]) -> str | None:
    """The module of the command ``argv`` names (its first word that is no top-level option), or
    ``None`` (no command, or an unknown one: then the full parser answers)."""
    words = iter(argv)
    for word in words:
        if word == "--threads":
            next(words, None)
        elif not word.startswith("-"):
            return next((m for m in COMMANDS if command_name(m) == word), None)
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand (subparsers are OneLineParsers too).

    ``only``: register just that module of ``COMMANDS`` (``main`` does this when the command line
    names one: importing every subcommand's module costs a tenth of a second, on every run).
    """
    parser = OneLineParser(
        prog="medssl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"medssl {medssl.__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="only print warnings and errors: no progress bars, no info lines (also from PyTorch Lightning)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="CPU threads for torch (default: torch's choice, usually every core). On a shared "
        "server, or with small images, 1 or 2 is often faster than all of them",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS if only is None else (only,):
        importlib.import_module(module_name).register(subparsers)
    return parser


def _setup_logging(quiet: bool) -> None:
    """medssl's log format on stderr; ``quiet``: warnings and errors only, and no progress displays.

    Lightning's loggers follow this level (``medssl.train.pretrain`` hands them to the root
    logger when it imports Lightning, which would otherwise set them to INFO).
    """
    if quiet or "medssl.progress" in sys.modules:  # else it imports tqdm later, not quiet by default
        from medssl.progress import set_quiet

        set_quiet(quiet)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        build_parser().print_help()  # every command listed, as without a command
        return 0 if args.command is None else 2
    _setup_logging(args.quiet)
    if args.threads is not None:
        if args.threads < 1:
            print(f"medssl: error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except MedsslError as exc:
        print(f"medssl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (`medssl methods | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 128 + 13  # the shell's code for a process ended by SIGPIPE
    except OSError as exc:  # e.g. "[Errno 20] Not a directory: 'PATH'": the path and the reason
        print(f"medssl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("medssl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

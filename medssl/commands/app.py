"""``medssl app [--db URL] [--scores SCORES_PARQUET] [--data DATA_DIR] [--embeddings EMB] [--checkpoint CKPT]
[--port P]``: the review app (Streamlit).

PostgreSQL: the app connects as an *app role* that owns nothing and holds only the grants of
``medssl audit grants`` (SELECT/INSERT on review_events, no UPDATE/DELETE/TRUNCATE, no ALTER), while
an *owner role* creates and upgrades the tables; see README "Review store: roles and audit"."""

from __future__ import annotations

import argparse
import logging
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

from medssl.commands.users import DB_HELP, review_store_url
from medssl.errors import ConfigError

log = logging.getLogger(__name__)

APP_ENTRY = Path(__file__).resolve().parents[2] / "apps" / "Home.py"
EMBEDDINGS_ENV = "MEDSSL_EMBEDDINGS"
CHECKPOINT_ENV = "MEDSSL_CHECKPOINT"  # the Fine-tune page's default checkpoint
DATA_DIR_ENV = "MEDSSL_DATA_DIR"  # the Fine-tune page's default DATA_DIR


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``app`` subcommand."""
    parser = subparsers.add_parser(
        "app",
        help="start the review app in the browser: sign in, work the queue of flagged cases, decide",
        description="Start the Streamlit review app. Clinicians sign in, work through the flagged "
        "cases (highest anomaly score first), look at each case and record confirm / dismiss / a "
        "class with a note; every decision is kept. Data scientists turn the decisions into labels "
        "and fine-tune. Create accounts first with `medssl users add NAME --role ROLE` (same --db). "
        "The decisions are an append-only, hash-chained audit trail (`medssl audit verify`). On "
        "PostgreSQL use two roles: an owner role that creates the tables (run any medssl command "
        "with --db as the owner once) and an app role for `medssl app --db`, holding only the "
        "grants `medssl audit grants --app-role ROLE` prints, so it cannot truncate the trail or "
        "disable its triggers (README: Review store: roles and audit). Failed sign-ins are "
        "throttled per account and per address.",
    )
    parser.add_argument("--db", default=None, help=DB_HELP)
    parser.add_argument("--scores", type=Path, default=None,
                        help="score file written by `medssl score`; its cases are added to the queue "
                        "(re-adding the same file changes nothing)")
    parser.add_argument("--data", type=Path, default=None,
                        help="DATA_DIR the scores were computed from, so the app can show each case "
                        "(default: the folder the score file names, or the folder it sits in); also the "
                        "Fine-tune page's default DATA_DIR (fine-tune, Register -> rescore)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the Fine-tune page's default checkpoint (checkpoint.pt from `medssl pretrain` "
                        "or a model.pt)")
    parser.add_argument("--embeddings", type=Path, default=None,
                        help="embeddings file from `medssl score --embeddings`: enables 'similar "
                        "reviewed cases' and the embedding map")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8501,
                        help="port to serve on (default 8501); if another program uses it, pick another, e.g. 8502")
    parser.add_argument("--import-only", action="store_true",
                        help="only add the scores to the review store, do not start the app")
    parser.set_defaults(func=run)


def check_port_free(host: str, port: int) -> None:
    """Raise ``ConfigError`` (one line: which port, what to do) when ``host:port`` cannot be served on.

    Streamlit would otherwise print "serving" and then stop on "Port N is not available".
    """
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        if os.name == "posix":  # as the server binds: a port left in TIME_WAIT by a stopped app is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is in use; pass --port N") from None
            if exc.errno == errno.EACCES:
                raise ConfigError(f"port {port} needs administrator rights; pass --port N with N above 1023") from None
            raise ConfigError(f"cannot serve on {host}:{port} ({exc.strerror}); pass another --host or --port") from None


def run(args: argparse.Namespace) -> int:
    """Import the scores, then serve ``apps/Home.py`` with ``streamlit run`` until interrupted."""
    from medssl.review import count_cases, import_scores, list_users, make_engine

    # check the paths first, so that a mistyped one leaves the store untouched
    if args.data is not None and not args.data.is_dir():
        raise ConfigError(f"--data {args.data} is not a folder; pass the DATA_DIR the scores were computed from")
    if args.embeddings is not None and not args.embeddings.is_file():
        raise ConfigError(f"--embeddings {args.embeddings} does not exist; pass the file `medssl score --embeddings` wrote")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint} does not exist; pass the checkpoint.pt `medssl pretrain` "
                          "wrote (or a model.pt)")
    if not args.import_only:
        check_port_free(args.host, args.port)
    engine = make_engine(review_store_url(args.db))
    if args.scores is not None:
        n = import_scores(engine, args.scores, args.data)
        log.info("imported %d scored cases from %s (%d cases in the store)", n, args.scores, count_cases(engine))
    if not list_users(engine):
        log.warning("no reviewer accounts yet: create one with `medssl users add NAME --role clinician`")
    if args.import_only:
        return 0
    if not APP_ENTRY.is_file():
        raise ConfigError(f"the app files are missing ({APP_ENTRY}); run medssl from a source checkout")
    env = dict(os.environ)
    env["MEDSSL_DB"] = engine.url.render_as_string(hide_password=False)
    if args.embeddings is not None:
        env[EMBEDDINGS_ENV] = str(args.embeddings.resolve())
    if args.checkpoint is not None:
        env[CHECKPOINT_ENV] = str(args.checkpoint.resolve())
    if args.data is not None:
        env[DATA_DIR_ENV] = str(args.data.resolve())
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_ENTRY),
        "--server.address", args.host, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        # no developer toolbar (Deploy, Rerun, Clear cache) for reviewers, also on localhost
        "--client.toolbarMode", "minimal",
    ]
    log.info("serving the review app on http://%s:%d (Ctrl+C stops it)", args.host, args.port)
    if os.name == "posix":
        # become the Streamlit server (same PID): stopping this process (Ctrl+C, kill, a service
        # manager) stops the app, instead of leaving an orphaned server holding the port
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, cmd, env)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0

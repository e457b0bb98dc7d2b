"""``medssl methods``: every pretraining method, its family, the domains it serves, what it learns
and the lightly parts it is built from (``medssl.list_methods()`` gives the same rows in Python)."""

from __future__ import annotations

import argparse
import json
import textwrap


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``methods`` subcommand."""
    parser = subparsers.add_parser(
        "methods",
        help="list the self-supervised pretraining methods (`medssl pretrain --method NAME`)",
        description="List every pretraining method: its family (contrastive, non-contrastive, masked "
        "modelling, clustering, pretext task, ...), the data domains it serves ('any' = every domain "
        "whose encoder it fits), one line on what the encoder learns from it, and the lightly parts it "
        "is built from. Use a name with `medssl pretrain --method NAME`; its options go in "
        "`method_options` of a --config YAML file.",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (one list) instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medssl.methods.base import method_info

    rows = method_info()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['family']} · domains: {r['domains']}")
        for line in textwrap.wrap(r["summary"], 96):
            print(f"{'':<{width}}  {line}")
        print(f"{'':<{width}}  lightly: {r['lightly_parts']}")
    return 0

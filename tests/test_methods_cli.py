"""`medssl methods` and `medssl.list_methods()`: every registered method is listed with its family,
domains, what it learns and its lightly parts, and `medssl pretrain --help` names it."""

from __future__ import annotations

import json

import medssl
from medssl.cli import main
from medssl.methods import list_methods


def test_every_method_is_described(capsys) -> None:
    rows = medssl.list_methods()
    assert [r["name"] for r in rows] == list_methods()
    for r in rows:
        assert r["family"] and r["summary"] and r["domains"] and r["lightly_parts"], r
    assert main(["methods", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows
    assert main(["methods"]) == 0
    table = capsys.readouterr().out
    for r in rows:
        assert f"{r['name']} " in table and r["family"] in table


def test_pretrain_help_names_every_method(capsys) -> None:
    try:
        main(["pretrain", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    text = " ".join(capsys.readouterr().out.split())
    missing = [name for name in list_methods() if name not in text]
    assert missing == [], f"`medssl pretrain --help` does not name {missing}"

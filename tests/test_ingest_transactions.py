"""Transactions ingest: schema inference on the real CSVs, histories, train-only scaling, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.cli import main
from medssl.data import get_domain, read_errors, read_manifest
from medssl.data.transactions import TableSchema, encode_rows, fit_preprocessing, infer_schema
from medssl.data.transactions.ingest import read_table
from medssl.errors import DataError


def _tx(shared_data: Path, name: str) -> Path:
    return shared_data / "transactions" / name


def test_schema_inference_ulb(shared_data: Path) -> None:
    s = infer_schema(read_table(_tx(shared_data, "ulb_creditcard_a.csv")))
    assert (s.id_col, s.label_col, s.entity_col, s.time_col) == ("transaction_id", "Class", None, None)
    assert s.numeric == [f"V{i}" for i in range(1, 29)] + ["Amount"]
    assert (s.amount, s.categorical, s.excluded) == (["Amount"], [], {})


def test_schema_inference_paysim(shared_data: Path) -> None:
    s = infer_schema(read_table(_tx(shared_data, "paysim_sample.csv")))
    assert (s.id_col, s.label_col, s.time_col) == (None, "isFraud", "step")
    assert s.categorical == ["type"]
    assert s.numeric == ["amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest", "isFlaggedFraud"]
    assert s.amount == ["amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"]
    assert sorted(s.excluded) == ["nameDest", "nameOrig"] and "id-like" in s.excluded["nameOrig"]


def test_group_header_is_detected_or_named(shared_data: Path, tmp_path: Path) -> None:
    """The UCI original has a group header line (X1..X23, Y) above the real column names."""
    lines = _tx(shared_data, "default_of_credit_card_clients.csv").read_text().splitlines()[:301]
    n_cols = len(lines[0].split(","))
    src = tmp_path / "default_uci.csv"
    src.write_text("\n".join([",".join([""] + [f"X{i}" for i in range(1, n_cols - 1)] + ["Y"])] + lines) + "\n")
    s = infer_schema(read_table(src))
    assert (s.id_col, s.label_col) == ("ID", "default.payment.next.month")
    assert s.amount[:2] == ["LIMIT_BAL", "BILL_AMT1"] and "PAY_0" in s.numeric and "PAY_0" not in s.amount
    # naming the header line explicitly gives the same table; the wrong line is not silently accepted
    assert list(read_table(src, header_row=1).columns) == list(read_table(src).columns)
    assert read_table(src, header_row=0).columns[1] == "X1"


def _small_log(tmp_path: Path) -> Path:
    """12 transactions of 3 accounts, out of time order, with one unseen-later category."""
    df = pd.DataFrame({
        "tx": [f"t{i:02d}" for i in range(12)],
        "account": ["a", "b", "c"] * 4,
        "when": [5, 1, 3, 2, 4, 6, 1, 9, 2, 8, 7, 5],
        "kind": ["pay", "pay", "cash", "cash", "pay", "pay", "cash", "pay", "pay", "cash", "pay", "cash"],
        "amount": [10.0, 2000.0, 35.5, 12.0, 1.0, 700.0, 90.0, 15.0, 22.0, 5.0, 64.0, 8.0],
        "fraud": [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0],
    })
    path = tmp_path / "log.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_ingest_with_entity_history(tmp_path: Path) -> None:
    out = tmp_path / "data"
    rc = main(["ingest", "transactions", str(_small_log(tmp_path)), "--out", str(out), "--id-col", "tx",
               "--entity-col", "account", "--time-col", "when", "--label-col", "fraud", "--history", "2",
               "--val-fraction", "0", "--test-fraction", "0"])
    assert rc == 0
    m = read_manifest(out)
    assert m["case_id"].tolist()[:3] == ["t00", "t01", "t02"] and m["patient_id"].tolist()[:3] == ["a", "b", "c"]
    assert m["label"].tolist()[3] == "1" and set(m["split"]) == {"train"}
    schema = TableSchema.from_dict(json.loads((out / "schema.json").read_text()))
    assert (schema.categorical, schema.numeric, schema.amount) == (["kind"], ["amount"], ["amount"])
    ds = get_domain("transactions").make_dataset(out, m, None)
    f = 1 + 1  # one numeric + one categorical, no missing indicators
    slots = ds[0].reshape(3, f + 1)
    # account a by time: t03 (2), t06 (1)... order is when=1:t06, 2:t03, 4:t09? -> a = t00,t03,t06,t09 at 5,2,1,8
    # t00 (when 5): previous a-transactions are t03 (when 2) then t06 (when 1)
    enc = torch.from_numpy(encode_rows(m, ds.preprocessing))
    torch.testing.assert_close(slots[0, :f], enc[0])
    torch.testing.assert_close(slots[1, :f], enc[3])
    torch.testing.assert_close(slots[2, :f], enc[6])
    assert slots[:, f].tolist() == [1.0, 1.0, 1.0]
    # t06 is account a's first transaction: both history slots are padding (zeros, flag 0)
    assert ds[6].reshape(3, f + 1)[1:].abs().sum() == 0
    assert ds.layout == {"n_numeric": 1, "cardinalities": [3], "history": 2}


def test_unseen_categories_and_nans_at_scoring_time(shared_data: Path) -> None:
    raw = read_table(_tx(shared_data, "paysim_sample.csv"))
    schema = infer_schema(raw)
    prep = fit_preprocessing(raw.iloc[:2000], schema)
    new = raw.iloc[2000:2003].copy()
    new["type"] = ["NEVER_SEEN", None, "CASH_OUT"]
    new["amount"] = [np.nan, "not a number", 100.0]
    x = encode_rows(new, prep)
    assert x.shape == (3, 7) and np.isfinite(x).all()
    cats = prep["categorical"][0]["categories"]
    assert cats == ["CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER"]
    assert x[:, 6].tolist() == [0.0, 0.0, 2.0]  # unknown, missing -> index 0; CASH_OUT -> 1 + 1
    assert x[0, 0] == 0.0 and x[1, 0] == 0.0  # imputed with the train median (0 after scaling)
    expected = (np.log1p(100.0) - prep["numeric"][0]["median"]) / prep["numeric"][0]["scale"]
    assert x[2, 0] == pytest.approx(expected, rel=1e-5)


def test_scaling_fitted_on_train_rows_only(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "ulb"
    assert main(["ingest", "transactions", str(_tx(shared_data, "ulb_creditcard_a.csv")), "--out", str(out)]) == 0
    m = read_manifest(out)
    assert set(m["split"]) == {"train", "val", "test"}
    domain = get_domain("transactions")
    base = domain.make_dataset(out, m, None).preprocessing
    train = m["split"] == "train"
    amounts = np.log1p(m.loc[train, "Amount"].to_numpy())
    assert base["numeric"][-1]["median"] == pytest.approx(float(np.median(amounts)))
    changed_test = m.copy()
    changed_test.loc[changed_test["split"] == "test", ["Amount", "V1"]] = 1e9
    assert domain.make_dataset(out, changed_test, None).preprocessing == base
    changed_train = m.copy()
    changed_train.loc[train[train].index[:500], "V1"] = 1e9
    assert domain.make_dataset(out, changed_train, None).preprocessing != base


def test_strings_in_numeric_column_go_to_errors_and_get_indicator(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": range(40), "amount": [str(10 + i) for i in range(40)], "fee": np.arange(40) * 0.5,
                       "label": [0, 1] * 20})
    df.loc[[3, 7], "amount"] = ["12 EUR", "ten"]
    df.loc[5, "fee"] = np.nan
    src = tmp_path / "bad.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "d"
    assert main(["ingest", "transactions", str(src), "--out", str(out), "--test-fraction", "0", "--val-fraction", "0"]) == 0
    errors = read_errors(out)
    wrong = errors[errors["kind"] == "wrong_type"]
    assert wrong["column"].tolist() == ["amount"] and wrong["count"].tolist() == ["2"]
    assert "'12 EUR'" in wrong["reason"].iloc[0]
    missing = errors[errors["kind"] == "missing"]
    assert missing["column"].tolist() == ["fee"] and missing["count"].tolist() == ["1"]
    m = read_manifest(out)
    assert len(m) == 40 and np.isnan(m.loc[[3, 7], "amount"]).all()  # kept, not dropped
    ds = get_domain("transactions").make_dataset(out, m, None)
    names = ds.preprocessing["feature_names"]
    assert names == ["amount", "fee", "amount__missing", "fee__missing"]
    x = torch.stack([ds[i] for i in range(40)])
    assert x[:, 2].nonzero().flatten().tolist() == [3, 7] and x[:, 3].nonzero().flatten().tolist() == [5]


@pytest.mark.parametrize("case", ["missing_label", "empty", "header_only", "missing_file", "bad_flag"])
def test_bad_inputs_exit_nonzero_with_one_line(case: str, tmp_path: Path, capsys, shared_data: Path) -> None:
    src = tmp_path / "in.csv"
    extra: list[str] = []
    expected = {"missing_label": "--label-col 'isFraudd' is not a column", "empty": "is empty",
                "header_only": "no transaction rows", "missing_file": "does not exist",
                "bad_flag": "argument --history: must be from 0 to 256, got -1"}[case]
    if case == "missing_label":
        src = _tx(shared_data, "paysim_sample.csv")
        extra = ["--label-col", "isFraudd"]
    elif case == "empty":
        src.write_text("")
    elif case == "header_only":
        src.write_text("a,b,c\n")
    elif case == "bad_flag":
        src = _tx(shared_data, "paysim_sample.csv")
        extra = ["--history", "-1"]
    try:
        rc = main(["ingest", "transactions", str(src), "--out", str(tmp_path / "out"), *extra])
    except SystemExit as exc:  # a flag out of range is an argparse usage error, checked at parse time
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert err[-1].startswith(("medssl: error:", "medssl ingest transactions: error:")) and expected in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_duplicate_and_empty_ids_are_logged_and_skipped(tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    pd.DataFrame({"tid": ["x1", "x2", "x2", None, "x5"], "amount": [1.0, 2.0, 3.0, 4.0, 5.0]}).to_csv(src, index=False)
    out = tmp_path / "d"
    assert main(["ingest", "transactions", str(src), "--out", str(out), "--id-col", "tid",
                 "--val-fraction", "0", "--test-fraction", "0"]) == 0
    assert read_manifest(out)["case_id"].tolist() == ["x1", "x2", "x5"]
    reasons = read_errors(out)["reason"].tolist()
    assert any("duplicate case id 'x2'" in r for r in reasons) and any("empty case id" in r for r in reasons)


def test_read_table_parquet_roundtrip(tmp_path: Path) -> None:
    df = pd.DataFrame({"amount": [1.5, 2.5], "kind": ["a", "b"]})
    df.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), df)
    with pytest.raises(DataError, match="unknown file type"):
        (tmp_path / "t.xlsx").write_text("x")
        read_table(tmp_path / "t.xlsx")


@pytest.mark.parametrize("text", ['{"id_col": nu', '{"not_a_field": 1}', ""])
def test_damaged_schema_json_is_a_data_error(tmp_path: Path, text: str) -> None:
    """A truncated schema.json, or one with unknown keys, raises DataError naming it (not JSON/TypeError)."""
    (tmp_path / "schema.json").write_text(text)
    with pytest.raises(DataError, match="schema.json could not be read"):
        TableSchema.read(tmp_path)

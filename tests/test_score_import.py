"""Score-file import checks every row before writing anything (`medssl app --import-only`):
one stderr line naming the file, the column and the first bad rows; the store unchanged. Each test
on SQLite and on a real PostgreSQL (tests/conftest.py ``new_review_db``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from medssl.cli import main
from medssl.review import count_cases, import_scores, list_queue, make_engine
from review_scores import build_real_scores


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> Path:
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"), n_cases=20, flag_top=6)


def _dup(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[7, "case_id"] = df.loc[2, "case_id"]
    return df


def _null_case(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[4, "case_id"] = None  # pandas 3: NaN in the str column (was stored as the string 'nan')
    return df


def _yes_no(df: pd.DataFrame) -> pd.DataFrame:
    df["flagged"] = np.where(df["flagged"], "yes", "no")  # 'no' used to flag the case too
    return df


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[row, column] = value
        return df
    return edit


BAD_FILES = {
    "duplicate case ids": (_dup, "'case_id' repeats a case id", "rows 2, 7"),
    "null case id": (_null_case, "'case_id' is empty", "row 4"),
    "flagged as yes/no": (_yes_no, "'flagged' must be true/false, not str values such as 'no'", "rows 0, 1, 2, 3, 4 and 15 more"),
    "NaN score": (_set("anomaly_score", 6, float("nan")), "'anomaly_score' holds NaN or infinite values", "row 6"),
    "inf percentile": (_set("anomaly_percentile", 1, float("inf")), "'anomaly_percentile' holds NaN", "row 1"),
    "empty patient": (_set("patient_id", 3, "  "), "'patient_id' is empty", "row 3"),
    "case id over 256 chars": (_set("case_id", 9, "c" * 257), "'case_id' is longer than 256 characters", "row 9"),
    "probability over 1": (_set("predicted_proba", 0, 1.5), "'predicted_proba' is outside [0, 1]", "row 0"),
    # PostgreSQL text cannot hold NUL (SQLite's can): refused on both, before anything is written
    "NUL in a case id": (_set("case_id", 5, "case\x005"), "'case_id' holds a NUL character", "row 5"),
    "NUL in a label": (_set("predicted_label", 2, "1\x00"), "'predicted_label' holds a NUL character", "row 2"),
    "no rows": (lambda df: df.iloc[:0], "has no rows", ""),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_score_file_is_one_line_and_imports_nothing(new_review_db, tmp_path: Path, scores: Path, capsys,
                                                          kind: str) -> None:
    edit, problem, rows = BAD_FILES[kind]
    db = new_review_db("review")
    engine = make_engine(db)
    import_scores(engine, scores)  # an earlier, good import: must stay exactly as it is
    with engine.connect() as conn:
        before = conn.execute(text("SELECT * FROM cases ORDER BY case_id")).all()
    df = pd.read_parquet(scores)
    df["anomaly_score"] = df["anomaly_score"] + 1.0  # a re-score: every row would change if imported
    bad = tmp_path / "bad_scores.parquet"
    edit(df).to_parquet(bad, index=False)
    assert main(["app", "--import-only", "--scores", str(bad), "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"medssl: error: score file {bad}") and problem in err and rows in err
    assert "Traceback" not in err
    with engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM cases ORDER BY case_id")).all() == before


def test_flagged_as_0_and_1_imports_like_booleans(new_review_db, tmp_path: Path, scores: Path) -> None:
    df = pd.read_parquet(scores)
    expected = set(df.loc[df["flagged"], "case_id"])
    df["flagged"] = df["flagged"].astype(int)
    path = tmp_path / "scores01.parquet"
    df.to_parquet(path, index=False)
    engine = make_engine(new_review_db("review"))
    assert import_scores(engine, path) == 20 and count_cases(engine) == 20
    assert set(list_queue(engine).rows["case_id"]) == expected and len(expected) == 6

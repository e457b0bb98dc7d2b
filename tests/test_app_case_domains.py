"""The case page for EHR, ECG-signal and transaction cases, with streamlit.testing.v1.AppTest.

Every case comes through the real loop on small slices of the real data in ../shared/data:
``medssl ingest`` -> ``medssl pretrain`` (one optimizer step on the CPU: an untrained encoder is
still a real model, and the page only needs real score rows) -> ``medssl score --flag-top 3`` ->
``import_scores`` into a SQLite review store -> a clinician opens the case in the app. What the
page shows is checked against the raw source files.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medssl.cli import main
from medssl.data import read_manifest
from medssl.data.ehr import GridStore
from medssl.data.signals import load_windows
from medssl.errors import DataError
from medssl.review import add_user, case_view, import_scores, make_engine
from medssl.data.ehr.long_csv import PLAUSIBLE_RANGES
from medssl.domains.ehr_variables import variable_info
from app_text import shown as rendered
from wfdb_cut import cut_record

APP = str(Path(__file__).resolve().parents[1] / "apps" / "Home.py")
TIMEOUT = 60
N_STAYS = 20  # > 10 train stays: the kNN anomaly scorer needs more than k = 10 reference cases
ECG_SECONDS = 120  # the first two minutes of MIT-BIH record 101: ~140 beats
ULB_ROWS = 300
AGE_200 = "133774"  # a PhysioNet 2012 stay whose file records Age 200 and Height -1 (not recorded)
PAYSIM_ROWS = 1600  # holds both transactions of three receiving accounts (nameDest)


@dataclass(frozen=True)
class Scored:
    src: Path  # what was ingested
    data_dir: Path
    scores: Path


def _cli(*argv: object) -> None:
    assert main(["-q", *map(str, argv)]) == 0, argv


def _pretrain_and_score(data_dir: Path, scores: Path, batch_size: int) -> None:
    run = data_dir.parent / f"{data_dir.name}-run"
    _cli("pretrain", "--data", data_dir, "--out", run, "--max-steps", 1, "--batch-size", batch_size,
         "--accelerator", "cpu", "--seed", 0)
    _cli("score", "--model", run / "checkpoint.pt", "--data", data_dir, "--out", scores, "--flag-top", 3,
         "--device", "cpu")


@pytest.fixture(scope="module")
def ehr(shared_data: Path, tmp_path_factory) -> Scored:
    root = tmp_path_factory.mktemp("ehr")
    src = root / "set-a"
    src.mkdir()
    for path in sorted((shared_data / "ehr" / "physionet2012" / "set-a").glob("*.txt"))[:N_STAYS]:
        shutil.copy(path, src)
    shutil.copy(shared_data / "ehr" / "physionet2012" / "set-a" / f"{AGE_200}.txt", src)  # its raw file says Age 200
    _cli("ingest", "ehr", src, "--format", "physionet2012", "--out", root / "data",
         "--outcomes", shared_data / "ehr" / "physionet2012" / "Outcomes-a.txt")
    _pretrain_and_score(root / "data", root / "scores.parquet", 8)  # outside DATA_DIR (score refuses an --out inside its --data); the file records the data folder
    return Scored(src, root / "data", root / "scores.parquet")


@pytest.fixture(scope="module")
def signals(shared_data: Path, tmp_path_factory) -> Scored:
    root = tmp_path_factory.mktemp("signals")
    src = root / "mitdb"
    src.mkdir()
    cut_record(shared_data / "signals" / "mitdb_ds1" / "101", ECG_SECONDS, src)  # the same samples, cut
    _cli("ingest", "signals", src, "--format", "wfdb", "--out", root / "data")
    _pretrain_and_score(root / "data", root / "scores.parquet", 16)
    return Scored(src, root / "data", root / "scores.parquet")


@pytest.fixture(scope="module")
def ulb(shared_data: Path, tmp_path_factory) -> Scored:
    """ULB credit-card rows: no card id, so every transaction is its own entity. The score file
    is written away from the data dir; the import is told the data dir (`medssl app --data`)."""
    root = tmp_path_factory.mktemp("ulb")
    src = root / "ulb.csv"
    pd.read_csv(shared_data / "transactions" / "ulb_creditcard_a.csv", nrows=ULB_ROWS).to_csv(src, index=False)
    _cli("ingest", "transactions", src, "--out", root / "data")
    _pretrain_and_score(root / "data", root / "scores" / "ulb.parquet", 32)
    return Scored(src, root / "data", root / "scores" / "ulb.parquet")


@pytest.fixture(scope="module")
def paysim(shared_data: Path, tmp_path_factory) -> Scored:
    """PaySim rows with the receiving account as the entity (--entity-col nameDest)."""
    root = tmp_path_factory.mktemp("paysim")
    src = root / "paysim.csv"
    pd.read_csv(shared_data / "transactions" / "paysim_sample.csv", nrows=PAYSIM_ROWS).to_csv(src, index=False)
    _cli("ingest", "transactions", src, "--entity-col", "nameDest", "--out", root / "data")
    _pretrain_and_score(root / "data", root / "scores.parquet", 64)
    return Scored(src, root / "data", root / "scores.parquet")


@pytest.fixture()
def store(new_review_db, ehr: Scored, signals: Scored, ulb: Scored, paysim: Scored, monkeypatch) -> str:
    """The four real `medssl score` files in a SQLite or PostgreSQL store (tests/conftest.py ``new_review_db``)."""
    url = new_review_db("review")
    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    add_user(engine, "ds_kim", "data_scientist", "kim-password")
    import_scores(engine, ehr.scores)  # data dir found beside the score file
    import_scores(engine, signals.scores)
    import_scores(engine, ulb.scores, ulb.data_dir)
    import_scores(engine, paysim.scores)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    return url


def _signed_in(name: str = "dr_lee") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input[0].input(name)
    at.text_input[1].input({"dr_lee": "lee-password", "ds_kim": "kim-password"}[name])
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def _top_flagged(scored: Scored) -> pd.Series:
    df = pd.read_parquet(scored.scores)
    assert df["flagged"].sum() == 3
    return df[df["flagged"]].sort_values("anomaly_score", ascending=False).iloc[0]


def _open_from_queue(case_id: str, name: str = "dr_lee") -> AppTest:
    at = _signed_in(name)
    at.button(key=f"open-{case_id}").click().run()
    assert not at.exception, at.exception
    assert [rendered(t.value) for t in at.title] == [f"Case {case_id}"]
    return at


def _open_directly(at: AppTest, case_id: str) -> AppTest:
    """What the queue's Open button and the similar-case links do (app_state.open_case)."""
    at.session_state["case_id"] = case_id
    at.switch_page("views/case.py").run()
    assert not at.exception, at.exception
    return at


def _infos(at: AppTest) -> list[str]:
    """The page's info boxes about the case's data (not the claim's expiry line)."""
    return [rendered(i.value) for i in at.info if not rendered(i.value).startswith("You hold this case")]


def _raw_stay(path: Path) -> pd.DataFrame:
    """The time series of a PhysioNet 2012 stay file as time_h, variable, value (measured rows only).

    The descriptors at 00:00 (RecordID, Age, Gender, Height, ICUType and the first Weight, the
    admission weight) are static, not series (the challenge's file format)."""
    raw = pd.read_csv(path)
    hh, mm = raw["Time"].str.split(":", expand=True).astype(int).T.to_numpy()
    at_zero = raw["Time"] == "00:00"
    weight0 = (raw["Parameter"] == "Weight") & at_zero
    static = (raw["Parameter"].isin(["RecordID", "Age", "Gender", "Height", "ICUType"]) & at_zero) | (
        weight0 & (weight0.cumsum() == 1))
    events = pd.DataFrame({"time_h": hh + mm / 60.0, "variable": raw["Parameter"], "value": raw["Value"]})
    return events[~static & (events["value"] != -1)]


def _label(variable: str) -> str:
    info = variable_info(variable)
    return f"{info.name} ({info.unit})" if info.unit else info.name


def test_ehr_case_shows_the_stays_own_variables_and_values(store: str, ehr: Scored) -> None:
    top = _top_flagged(ehr)
    at = _open_from_queue(top["case_id"])
    assert f"patient {top['patient_id']} · ehr · model {top['model_id']}" in [rendered(c.value) for c in at.caption]
    raw = _raw_stay(ehr.src / f"{top['case_id']}.txt")
    measured = set(raw["variable"])
    (chooser,) = at.multiselect
    assert chooser.label == "Variables"
    # Every variable the stay measured within 48 h and the ingest kept, and nothing else, by its
    # readable name and unit (NIDiasABP -> "Non-invasive diastolic BP (mmHg)").
    kept = set(GridStore.load(ehr.data_dir).variables)  # the grid file the manifest names
    assert set(chooser.options) == {_label(v) for v in measured & kept} and "Heart rate (bpm)" in chooser.options
    assert "NIDiasABP" not in chooser.options
    default = chooser.value
    assert "HR" in default and len(default) == 6
    assert len(at.get("image")) == 1  # the pyplot: one panel per variable
    assert ("Points are the hourly means of the measured values; lines only join them; the shaded band is the normal "
            "adult range.") in [rendered(c.value) for c in at.caption]

    pair = ["HR", next(v for v in default if v != "HR")]
    chooser.set_value(pair).run()
    assert not at.exception, at.exception
    assert at.multiselect[0].value == pair and len(at.get("image")) == 1

    # The plotted points are the stay's raw values: the hourly mean of the measurements in each bin.
    manifest = read_manifest(ehr.data_dir)
    dataset = case_view.domain_dataset(ehr.data_dir, manifest)
    index = int(np.flatnonzero(manifest["case_id"] == top["case_id"])[0])
    obs = case_view.ehr_observations(dataset[index], dataset.preprocessing)
    for name in pair:
        part = raw[raw["variable"] == name]
        expected = part.groupby(np.minimum(np.floor(part["time_h"]), 47))["value"].mean()
        shown = obs[obs["variable"] == name].set_index("time_h")["value"]
        assert len(expected) > 5 and shown.index.tolist() == expected.index.tolist()
        np.testing.assert_allclose(shown.to_numpy(), expected.to_numpy(), rtol=1e-4)
    # The default shows the stay's most often measured variables (the vitals), not the first labs by name.
    hours_measured = obs["variable"].value_counts()
    assert min(hours_measured[default]) >= hours_measured.sort_values(ascending=False).iloc[5]
    # Demographics and ICU type from the stay's raw file (-1: not recorded).
    statics = pd.read_csv(ehr.src / f"{top['case_id']}.txt").query("Time == '00:00'").drop_duplicates("Parameter")
    statics = statics.set_index("Parameter")["Value"]
    demo = at.dataframe[0].value.set_index("field")["value"]

    def expected(name: str, fmt) -> str:  # -1 or absent: not recorded; impossible: said so
        v = statics.get(name, -1)
        if v == -1:
            return "not recorded"
        return fmt(v) + ("" if PLAUSIBLE_RANGES[name][0] <= v <= PLAUSIBLE_RANGES[name][1] else " (impossible)")

    icu = {1: "Coronary Care Unit", 2: "Cardiac Surgery Recovery Unit", 3: "Medical ICU", 4: "Surgical ICU"}
    assert demo["ICU type"] == expected("ICUType", lambda v: icu[int(v)])
    assert demo["Gender"] == expected("Gender", lambda v: ["female", "male"][int(v)])
    assert demo["Age"] == expected("Age", lambda v: f"{v:g} years")
    assert demo["Height"] == expected("Height", lambda v: f"{v:g} cm")


def test_ehr_case_calls_out_the_impossible_age_of_its_raw_file(store: str, ehr: Scored) -> None:
    """Stay 133774's file says Age 200 (and Height -1, no ICUType): the page must call the age out
    as impossible instead of showing it as a fact, and show the -1 as not recorded."""
    raw = pd.read_csv(ehr.src / f"{AGE_200}.txt")
    assert raw.query("Parameter == 'Age'")["Value"].tolist() == [200]
    at = _open_directly(_signed_in(), AGE_200)
    warnings = [rendered(w.value) for w in at.warning]
    assert "Age 200 years recorded: impossible (outside 0-120); check the source record." in warnings
    demo = at.dataframe[0].value.set_index("field")["value"]
    assert demo["Age"] == "200 years (impossible)"
    assert demo["Height"] == "not recorded" and demo["ICU type"] == "not recorded"  # -1, and no ICUType row
    assert demo["Gender"] == "male" and demo["Admission weight"] == "66 kg"


def test_ehr_values_dropped_at_ingest_are_named_with_their_raw_value(tmp_path: Path, shared_data: Path) -> None:
    """A measured value the ingest drops as impossible (HR 0 here, written into a copy of a real
    stay) is read back from the source file and called out, not silently missing."""
    src = tmp_path / "set-a"
    src.mkdir()
    stays = sorted((shared_data / "ehr" / "physionet2012" / "set-a").glob("*.txt"))[:12]
    for path in stays:
        shutil.copy(path, src)
    first = src / stays[0].name
    first.write_text(first.read_text().rstrip("\n") + "\n47:10,HR,0\n")
    _cli("ingest", "ehr", src, "--format", "physionet2012", "--out", tmp_path / "data")
    manifest = read_manifest(tmp_path / "data")
    view = case_view.view_case(tmp_path / "data", manifest, stays[0].stem)
    assert isinstance(view, case_view.VitalsView)
    assert ("Heart rate 0 bpm recorded at 47:10: impossible (outside 1-300); the ingest dropped it, so it is shown "
            "as not recorded.") in view.warnings
    table = view.variables.set_index("variable")
    assert table.loc["NIDiasABP", "name"] == "Non-invasive diastolic BP" and table.loc["K", "unit"] == "mEq/L"
    assert (table.loc["HR", "low"], table.loc["HR", "high"]) == (60, 100)


def _ecg_case(signals: Scored, sample_near: int | None = None) -> pd.Series:
    manifest = read_manifest(signals.data_dir)
    if sample_near is None:
        return manifest.set_index("case_id").loc[_top_flagged(signals)["case_id"]]
    return manifest.iloc[int(np.argmin(np.abs(manifest["sample"] - sample_near)))]


@pytest.mark.parametrize("name, sees_answer", [("dr_lee", False), ("ds_kim", True)])
def test_signals_case_shows_the_reference_beat_only_to_data_scientists(store: str, signals: Scored, name: str,
                                                                      sees_answer: bool) -> None:
    top = _top_flagged(signals)
    row = _ecg_case(signals)
    at = _open_from_queue(top["case_id"], name)
    captions = " ".join(rendered(c.value) for c in at.caption)
    answer = f"Reference: beat {row['symbol']} (class {row['label']})."
    assert (answer in captions) is sees_answer
    assert ("(class " in captions) is sees_answer
    annotations = at.dataframe[0].value
    beats = annotations[annotations["kind"] == "beat"]
    assert len(beats) >= 10  # a 10 s strip of record 101 (~75 bpm)
    if sees_answer:
        assert row["symbol"] in set(beats["symbol"]) and "" not in set(beats["symbol"])
    else:
        assert set(beats["symbol"]) == {""}


def test_signals_case_is_a_rhythm_strip_in_the_records_own_units(store: str, signals: Scored) -> None:
    import wfdb

    top = _top_flagged(signals)
    at = _open_from_queue(top["case_id"])
    record, sample = top["case_id"].split(":")
    sample = int(sample)
    row = _ecg_case(signals)
    assert len(at.get("image")) == 3  # the 10 s strip in two rows of 5 s, and the close-up of the scored window

    # The window the model scored: the raw MLII and V1 samples around the annotated beat.
    frame = case_view.signal_window(signals.data_dir, {"row": row["row"], "leads": row["leads"]})
    with pytest.raises(DataError, match="outside the"):  # a negative row would read a window from the end
        case_view.signal_window(signals.data_dir, {"row": -1, "leads": row["leads"]})
    raw = wfdb.rdrecord(str(signals.src / record)).p_signal
    assert frame.columns.tolist() == ["MLII", "V1"] and len(frame) == 252
    np.testing.assert_allclose(frame.to_numpy(), raw[sample - 90:sample + 162], rtol=1e-6)
    assert case_view.beat_offset(row.to_dict() | {"case_id": top["case_id"]}, len(frame)) == 90
    assert sample in wfdb.rdann(str(signals.src / record), "atr").sample

    # The strip: 10 s of the record around the beat, in the header's units, with its beats' RR intervals.
    manifest = read_manifest(signals.data_dir)
    view = case_view.view_case(signals.data_dir, manifest, top["case_id"])
    assert isinstance(view, case_view.EcgView) and view.units == ["mV", "mV"] and view.fs == 360
    start = int(round(view.strip.index[0] * 360))
    assert len(view.strip) == 3600 and start <= sample < start + 3600
    np.testing.assert_allclose(view.strip.to_numpy(), raw[start:start + 3600], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(view.window.to_numpy(), frame.to_numpy())
    assert view.window.index[90] == pytest.approx(sample / 360)
    ann = wfdb.rdann(str(signals.src / record), "atr", sampfrom=start, sampto=start + 3599)
    beats = [s for s, sym in zip(ann.sample, ann.symbol) if sym in "NLRBAaJSVrFejnE/fQ?"]
    np.testing.assert_allclose(view.rr["rr_ms"].to_numpy(), np.diff(beats) / 360 * 1000)
    assert view.paper.minor_s == pytest.approx(0.04) and view.paper.minor_mv == pytest.approx(0.1)
    assert view.paper.major_s == pytest.approx(0.2) and view.paper.major_mv == pytest.approx(0.5)


def test_signals_strip_shows_reviewers_the_artifact_annotation(store: str, signals: Scored) -> None:
    """Record 101 marks an isolated artifact (|) at sample 40884 and signal-quality changes (~): no
    answer, so a reviewer sees them on the strip; the beat symbols stay hidden."""
    row = _ecg_case(signals, sample_near=40884)
    at = _open_directly(_signed_in(), row["case_id"])
    annotations = at.dataframe[0].value
    quality = annotations[annotations["kind"] == "quality"]
    assert 40884 / 360 == pytest.approx(quality.loc[quality["symbol"] == "|", "time_s"].iloc[0])
    assert set(quality["symbol"]) <= {"|", "~"} and set(annotations.loc[annotations["kind"] == "beat", "symbol"]) == {""}


def test_transaction_case_shows_its_real_row_and_deviating_features(store: str, ulb: Scored) -> None:
    top = _top_flagged(ulb)
    at = _open_from_queue(top["case_id"])
    raw = pd.read_csv(ulb.src).set_index("transaction_id").loc[top["case_id"]]
    shown, deviating = at.dataframe[0].value, at.dataframe[1].value
    assert shown["case_id"].tolist() == [top["case_id"]]
    assert shown["Amount"].iloc[0] == pytest.approx(raw["Amount"])
    assert shown["V14"].iloc[0] == pytest.approx(raw["V14"])
    assert set(deviating["feature"]) <= {f"V{i}" for i in range(1, 29)} | {"Amount"}
    for r in deviating.itertuples(index=False):
        assert r.value == pytest.approx(raw[r.feature])
    # Without --entity-col every transaction is its own entity: the page says so, no one-row "history".
    assert ("No other transaction of this entity in the data. It was ingested without --entity-col: each "
            "transaction is its own entity.") in [rendered(c.value) for c in at.caption]
    assert [rendered(h.value) for h in at.subheader][:4] == [
        "The transaction", f"How it differs from all {ULB_ROWS} transactions", "The entity's history", "Why it stands out"]
    assert len(at.dataframe) == 3


@pytest.mark.parametrize("name, sees_label", [("dr_lee", False), ("ds_kim", True)])
def test_transaction_label_is_shown_only_to_data_scientists(store: str, ulb: Scored, paysim: Scored, name: str,
                                                            sees_label: bool) -> None:
    top = _top_flagged(ulb)
    at = _open_from_queue(top["case_id"], name)
    shown = at.dataframe[0].value
    assert ("label" in shown.columns) is sees_label and ("split" in shown.columns) is sees_label
    assert "Class" not in shown.columns  # the source's label column is never a feature
    if sees_label:
        raw = pd.read_csv(ulb.src).set_index("transaction_id").loc[top["case_id"]]
        assert int(shown["label"].iloc[0]) == int(raw["Class"])
    # the entity's history table too (PaySim, by receiving account)
    rows = read_manifest(paysim.data_dir).query("patient_id == 'C573854745'")
    at = _open_directly(_signed_in(name), rows["case_id"].iloc[0])
    history = at.dataframe[2].value
    assert ("label" in history.columns) is sees_label and len(history) == 2


def test_transaction_flagged_without_a_standout_feature_says_why(store: str, ulb: Scored) -> None:
    """Issue 16: a transaction ranked near the top by the scorer showed no feature above |z| 2, and
    the page said nothing about why. The page must say that no single feature stands out, and what
    does; for a case with a standout feature it names it."""
    scores = pd.read_parquet(ulb.scores).sort_values("anomaly_score", ascending=False)
    manifest = read_manifest(ulb.data_dir)
    cols = case_view.numeric_columns(manifest)
    values = manifest.set_index("case_id")[cols]
    z = (values - values.mean()) / values.std(ddof=0)
    top_tenth = scores.head(len(scores) // 10)["case_id"]
    quiet = [c for c in top_tenth if z.loc[c].abs().max() < 3]
    assert quiet, "no highly ranked case without a standout feature in this slice"
    case_id = quiet[0]
    at = _open_directly(_signed_in(), case_id)
    captions = [rendered(c.value) for c in at.caption]
    reason = next(c for c in captions if c.startswith("No single feature stands out"))
    top = z.loc[case_id].abs().idxmax()
    assert f"the largest |z| is {z.loc[case_id].abs().max():.1f} ({top}), under 3" in reason
    assert "nearest transactions in the standardised feature space" in reason and f"of all {ULB_ROWS}" in reason
    why = at.dataframe[2].value
    assert why.columns.tolist() == ["feature", "value", "median", "robust_z", "z"]
    med = values.median()
    mad = 1.4826 * (values - med).abs().median()
    for r in why.itertuples(index=False):
        assert r.robust_z == pytest.approx((values.loc[case_id, r.feature] - med[r.feature]) / mad[r.feature], rel=1e-6)

    flagged = _top_flagged(ulb)["case_id"]
    at = _open_directly(_signed_in(), flagged)
    standout = z.loc[flagged].abs().idxmax()
    assert any(rendered(c.value).startswith(f"{standout} stands out (z = {z.loc[flagged, standout]:.1f})")
               for c in at.caption)


def test_transaction_entity_history_holds_only_that_entitys_rows(store: str, paysim: Scored) -> None:
    raw = pd.read_csv(paysim.src)
    manifest = read_manifest(paysim.data_dir)
    entity = "C573854745"  # receives rows 311 and 1455 of the slice
    rows = manifest[manifest["patient_id"] == entity]
    assert len(rows) == 2
    at = _open_directly(_signed_in(), rows["case_id"].iloc[0])
    shown, deviating, history = (d.value for d in at.dataframe[:3])
    assert shown["amount"].iloc[0] == pytest.approx(raw.loc[int(rows["row"].iloc[0]) - 1, "amount"])
    assert "time" not in set(deviating["feature"])  # the step orders histories; it is no feature
    assert set(history["patient_id"]) == {entity}
    expected = raw[raw["nameDest"] == entity].sort_values("step")
    assert history["time"].tolist() == expected["step"].tolist()  # oldest first
    np.testing.assert_allclose(history["amount"].to_numpy(), expected["amount"].to_numpy())


def test_a_case_whose_data_is_not_here_shows_an_info_message(tmp_path: Path, store: str, ehr: Scored) -> None:
    top = _top_flagged(ehr)
    engine = make_engine(store)
    # a score file that records no data folder (another tool wrote it) and has no manifest beside it
    elsewhere = tmp_path / "scores-only" / "scores.parquet"
    elsewhere.parent.mkdir()
    pd.read_parquet(ehr.scores).to_parquet(elsewhere, index=False)  # drops medssl.data_dir
    import_scores(engine, elsewhere)
    at = _open_from_queue(top["case_id"])
    assert _infos(at) == ["This case's data folder is not known here; start the app with --data DATA_DIR to see the case."]
    assert not at.get("image")

    gone = tmp_path / "gone"
    shutil.copytree(ehr.data_dir, gone)
    import_scores(engine, ehr.scores, gone)
    shutil.rmtree(gone)
    at.run()
    assert not at.exception, at.exception
    assert _infos(at) == ["This case's data folder is not known here; start the app with --data DATA_DIR to see the case."]


def test_a_case_dropped_by_a_new_ingest_shows_an_info_message(tmp_path: Path, ehr: Scored, monkeypatch) -> None:
    copy = tmp_path / "data"
    shutil.copytree(ehr.data_dir, copy)
    url = f"sqlite:///{tmp_path / 'copy.db'}"  # its own store: the copy's cases are the ones reviewed here
    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    import_scores(engine, ehr.scores, copy)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    scores = pd.read_parquet(ehr.scores)
    last = scores.sort_values("case_id")["case_id"].iloc[-1]  # not among the first 10 stay files
    at = _open_directly(_signed_in(), last)
    assert len(at.get("image")) == 1 and not _infos(at)
    # Ingest again into the same folder with only 10 stays while the app runs: the page must read
    # the new manifest, not show the case from its cache.
    _cli("ingest", "ehr", ehr.src, "--format", "physionet2012", "--limit", 10, "--out", copy)
    assert last not in set(read_manifest(copy)["case_id"])
    at.run()
    assert not at.exception, at.exception
    assert _infos(at) == [f"Case {last} is not in {copy.resolve()}/manifest.parquet."]
    assert not at.get("image")


def test_a_window_that_is_no_beat_gets_no_beat_marker(shared_data: Path, tmp_path: Path) -> None:
    """Wearable windows (sktime .ts) are cut without a beat: the page draws no red line."""
    _cli("ingest", "signals", shared_data / "signals" / "basicmotions" / "BasicMotions_TEST.ts", "--format", "ts",
         "--out", tmp_path / "motions")
    row = read_manifest(tmp_path / "motions").iloc[7].to_dict()
    frame = case_view.signal_window(tmp_path / "motions", row)
    assert frame.columns.tolist() == [f"ch{i}" for i in range(6)] and len(frame) == 100
    np.testing.assert_array_equal(frame.to_numpy().T, load_windows(tmp_path / "motions")[7])
    assert case_view.beat_offset(row, len(frame)) is None


def test_an_ecg_case_whose_record_moved_still_shows_its_scored_window(signals: Scored, tmp_path: Path) -> None:
    from medssl.domains.case_views import CaseContext
    from medssl.domains.signals import signal_case_view

    rows = read_manifest(signals.data_dir)
    rows["source"] = str(tmp_path / "gone" / "101")  # the record's files are not there any more
    index = int(np.flatnonzero(rows["case_id"] == _top_flagged(signals)["case_id"])[0])
    view = signal_case_view(CaseContext(signals.data_dir, rows, index))
    assert isinstance(view, case_view.SeriesView) and view.frame.columns.tolist() == ["MLII", "V1"]
    assert view.marker == pytest.approx(90 / 360) and view.x_label == "seconds in the window"
    assert f"record {tmp_path / 'gone' / '101'} could not be read for the rhythm strip" in view.caption
    assert "(class " not in view.caption  # still no reference answer for a reviewer


def test_a_view_cached_for_a_data_scientist_is_never_served_to_a_reviewer(store: str, signals: Scored,
                                                                           ulb: Scored) -> None:
    """The case view is cached per process (st.cache_data): a data scientist opening a case first
    must not leave the reference answer in the cache for the next reviewer of that case."""
    ecg, tx = _top_flagged(signals)["case_id"], _top_flagged(ulb)["case_id"]
    for case_id in (ecg, tx):
        seen = _open_directly(_signed_in("ds_kim"), case_id)
        assert "Reference: beat" in " ".join(rendered(c.value) for c in seen.caption) or "label" in seen.dataframe[0].value
        at = _open_directly(_signed_in("dr_lee"), case_id)
        assert "(class " not in " ".join(rendered(c.value) for c in at.caption)
        assert "label" not in at.dataframe[0].value.columns and "split" not in at.dataframe[0].value.columns
        assert "symbol" not in at.dataframe[0].value.columns or set(at.dataframe[0].value["symbol"]) <= {"", "|", "~"}

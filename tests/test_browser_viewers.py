"""Each domain's case viewer in a real browser: headless Chromium against one `medssl app`.

The cases come through the real loop (the module fixtures of test_app_case_domains.py: ingest ->
pretrain one step -> score) for the ECG, ICU-stay and transaction cases; the CT case is pydicom's
real CT_small.dcm ingested with `medssl ingest dicom`, scored by a plain statistic of its pixels
(a score file with `medssl score`'s columns: the viewer only needs a queue row). A clinician opens
each case from the queue; the test checks what the page says and saves one screenshot per viewer
into the test's temp folder (ecg.png, vitals.png, transactions.png, ct_lung.png).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from browser_steps import case_heading, headless_chromium
from medssl.cli import main
from medssl.data import read_manifest
from medssl.review import add_user, import_scores, make_engine
from test_app_case_domains import AGE_200, Scored, ehr, signals, ulb, _top_flagged  # noqa: F401  (fixtures)
from test_browser import CHROMEDRIVER, CHROMIUM, _free_port, _wait_healthy

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="headless browser test needs Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver)",
)


def _ct_scores(tmp_path: Path) -> tuple[Path, Path, str]:
    """A DICOM data dir of pydicom's real CT_small.dcm (and MR_small.dcm), and a score file for it."""
    from pydicom.data import get_testdata_file

    src = tmp_path / "dicom"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    data = tmp_path / "dicom-data"
    assert main(["-q", "ingest", "dicom", str(src), "--out", str(data), "--workers", "1"]) == 0
    manifest = read_manifest(data)
    score = np.array([1.0 if str(m).upper() == "CT" else 0.5 for m in manifest["modality"]])
    scores = pd.DataFrame({
        "case_id": manifest["case_id"], "patient_id": manifest["patient_id"], "domain": manifest["domain"],
        "anomaly_score": score, "anomaly_percentile": 100.0 * score, "flagged": True,
        "predicted_label": pd.Series([None] * len(manifest), dtype=object),
        "predicted_proba": np.full(len(manifest), np.nan), "model_id": "pixel-statistic",
        "scored_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    })
    path = tmp_path / "dicom-scores.parquet"
    scores.to_parquet(path, index=False)
    ct = manifest.loc[manifest["modality"] == "CT", "patient_id"].iloc[0]
    return path, data, str(ct)


@pytest.mark.slow
def test_each_case_viewer_in_a_real_browser(tmp_path: Path, ehr: Scored, signals: Scored, ulb: Scored) -> None:
    pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    ct_scores, ct_data, ct_patient = _ct_scores(tmp_path)
    url = f"sqlite:///{tmp_path / 'review.db'}"
    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    import_scores(engine, ehr.scores)
    import_scores(engine, signals.scores)
    import_scores(engine, ulb.scores, ulb.data_dir)
    import_scores(engine, ct_scores, ct_data)
    # the Age-200 stay need not be flagged: add it to the queue through a copy of the score file
    stays = pd.read_parquet(ehr.scores)
    stays.loc[stays["case_id"] == AGE_200, "flagged"] = True
    stays[stays["case_id"] == AGE_200].to_parquet(tmp_path / "age200.parquet", index=False)
    import_scores(engine, tmp_path / "age200.parquet", ehr.data_dir)

    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", url, "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    shots: dict[str, Path] = {}
    try:
        _wait_healthy(port, app)
        driver = headless_chromium(tmp_path / "chromium", "1500,2600")
        wait = WebDriverWait(driver, 120)
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label="Name"]'))).send_keys("dr_lee")
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Password"]'))).send_keys("lee-password")
        wait.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Sign in']"))).click()

        def page_text() -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        def open_patient(patient: str, case_id: str) -> None:
            wait.until(EC.presence_of_element_located((By.XPATH, "//h1[contains(., 'Review queue')]")))
            open_patient_case(driver, wait, page_text, case_id, patient)

        def back_to_queue() -> None:
            wait.until(EC.element_to_be_clickable((By.XPATH, "//a[contains(., 'Review queue')]"))).click()

        def rendered(d) -> bool:  # the script finished: no skeletons, no stale elements, the last section drawn
            return ("Similar reviewed cases" in page_text()
                    and not d.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"], [data-stale="true"]'))

        def snap(name: str, ready) -> None:
            wait.until(lambda d: rendered(d) and ready(d))
            time.sleep(1)  # let the figures paint
            driver.execute_script("window.scrollTo(0, 0)")
            shots[name] = tmp_path / f"{name}.png"
            assert driver.save_screenshot(str(shots[name]))

        # ECG: the rhythm strip and the close-up (two figures), paper spec, no reference answer
        ecg = _top_flagged(signals)["case_id"]
        open_patient("101", ecg)  # record 101 holds the three flagged beats: open this one's row
        snap("ecg", lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')) >= 2
             and "Paper: 25 mm/s, 10 mm/mV" in page_text())
        text = page_text()
        assert "(class " not in text and "Reference: beat" not in text
        assert "RR before the beat" in text and "Rhythm strip, 10 s in two rows of 5 s." in text
        back_to_queue()

        # ICU stay with Age 200 in its file: small multiples, demographics, the impossible age called out
        open_patient(AGE_200, AGE_200)
        snap("vitals", lambda d: "Age 200 years recorded: impossible" in page_text()
             and d.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img'))
        text = page_text()
        assert "Heart rate (bpm)" in text and "NIDiasABP" not in text.split("Variables")[1].split("\n")[1]
        back_to_queue()

        # a transaction: no label column, how it differs, why it stands out
        tx = _top_flagged(ulb)
        open_patient(tx["patient_id"], tx["case_id"])
        snap("transactions", lambda d: "Why it stands out" in page_text())
        assert "stands out" in page_text().split("Why it stands out")[1]
        back_to_queue()

        # CT: choose the lung preset; the caption gives the window in HU; plotly draws it (zoom, pan)
        ct_case = read_manifest(ct_data).query("modality == 'CT'")["case_id"].iloc[0]
        open_patient(ct_patient, ct_case)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot")))
        preset = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-wl-preset input")))  # key wl-preset
        preset.click()
        option = wait.until(EC.element_to_be_clickable((By.XPATH, "//*[@role='option'][contains(., 'lung (W 1500 / L -600)')]")))
        option.click()
        snap("ct_lung", lambda d: "window 1500 HU / level -600 HU" in page_text()
             and d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))
    except Exception:
        if driver is not None:
            driver.save_screenshot(str(tmp_path / "failure.png"))
        raise
    finally:
        if driver is not None:
            driver.quit()
        app.terminate()
        app.wait(timeout=30)

    for path in shots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(shots) == ["ct_lung", "ecg", "transactions", "vitals"]
    print("screenshots:", *map(str, shots.values()))


def open_patient_case(driver, wait, page_text, case_id: str, patient: str) -> None:
    """From the queue: filter by ``patient`` and open ``case_id`` (its row's Open button)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC

    box = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Patient id"]')))
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(patient, Keys.ENTER)
    wait.until(lambda d: case_id in page_text())
    key = "st-key-open-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in case_id)
    buttons = driver.find_elements(By.CSS_SELECTOR, f'[class*="{key}"] button')
    if not buttons:  # the row whose first cell is the case id
        buttons = driver.find_elements(By.XPATH, f"//div[@data-testid='stHorizontalBlock'][.//*[normalize-space(text())='{case_id}']]//button[normalize-space(.)='Open']")
    buttons[0].click()
    wait.until(EC.presence_of_element_located((By.XPATH, case_heading(case_id))))

"""Issue 18 in a real browser (headless Chromium against `medssl app --checkpoint --data --embeddings`):
a data scientist signs in, fine-tunes on the Fine-tune page, registers the model (the page rescores
the queue: the queue shows the new model id), asks for the cases to label next, and the queue's
"Label next" filter lists them; the rescored top case shows why it was flagged. Needs Debian's chromium + chromium-driver and selenium (see
tests/test_browser.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from browser_steps import button_labelled, dom_check, dom_click, headless_chromium, open_button, open_case_from_queue, sign_in
from medssl.review import add_user, case_events, import_scores, make_engine, record_decision
from test_browser import CHROMEDRIVER, CHROMIUM, _free_port, _wait_healthy

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="headless browser test needs Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver)",
)


@pytest.mark.slow
def test_browser_fine_tune_register_rescore_and_label_next(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from medssl.checkpoints import file_sha256
    from medssl.data import ErrorLog, write_manifest
    from medssl.data.imaging.npz import scan_npz
    from medssl.review.label_requests import label_requests
    from medssl.scoring.job import score
    from medssl.train.pretrain import pretrain

    # real data and a briefly pretrained checkpoint; the queue starts with that checkpoint's scores
    manifest = scan_npz(shared_data / "imaging" / "pneumoniamnist_trainval.npz", ErrorLog())
    manifest = pd.concat([manifest[manifest["split"] == "train"].iloc[::20],
                          manifest[manifest["split"] == "val"].iloc[::5]], ignore_index=True)
    data = tmp_path / "data"
    write_manifest(manifest, data)
    checkpoint = Path(pretrain(data, tmp_path / "pretrain", {"max_steps": 1, "batch_size": 16, "accelerator": "cpu"}))
    first = tmp_path / "first"
    score(checkpoint, data, first / "scores.parquet", embeddings_out=first / "embeddings.parquet")
    url = f"sqlite:///{tmp_path / 'review.db'}"
    engine = make_engine(url)
    add_user(engine, "ana", "data_scientist", "ana-password")
    import_scores(engine, first / "scores.parquet", data)
    decided = str(pd.read_parquet(first / "scores.parquet")["case_id"].iloc[0])
    record_decision(engine, decided, "dr_lee", "assign_class", label="1", note="before the rescore")

    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", url, "--port", str(port),
                            "--checkpoint", str(checkpoint), "--data", str(data),
                            "--embeddings", str(first / "embeddings.parquet")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    model = checkpoint.parent / "finetune-app" / "model.pt"  # the page's default output folder
    try:
        _wait_healthy(port, app)
        driver = headless_chromium(tmp_path / "chromium")
        wait = WebDriverWait(driver, 240)
        sign_in(driver, wait, port, "ana", "ana-password")

        # Fine-tune page: the checkpoint and DATA_DIR come from `medssl app --checkpoint --data`
        dom_click(driver, wait, "//a[@data-testid='stSidebarNavLink'][.//span[normalize-space(.)='Fine-tune']]")
        wait.until(EC.presence_of_element_located((By.XPATH, "//h1[contains(., 'Fine-tune with few labels')]")))
        field = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label^="Pretrained checkpoint"]')))
        assert field.get_attribute("value") == str(checkpoint)
        dom_check(driver, wait, "the manifest's own labels")
        dom_click(driver, wait, button_labelled("Run fine-tune"))
        dom_click(driver, wait, button_labelled("Register this model for scoring"))
        model_id = file_sha256(model)
        metrics = json.loads((model.parent / "metrics.json").read_text())
        assert metrics["label_unit"] and metrics["n_labelled"] > 100  # the manifest's labels, not the one decision
        wait.until(EC.presence_of_element_located((By.XPATH, f"//*[contains(., 'Queue rescored with model {model_id[:12]}')]")))

        # Label next: pick ten cases, send them to the queue
        dom_click(driver, wait, button_labelled("Pick cases to label next"))
        dom_click(driver, wait, button_labelled("Send these 10 cases to the review queue"))
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(., '10 new labelling request(s)')]")))
        requested = label_requests(make_engine(url))["case_id"].tolist()
        assert len(requested) == 10 and decided not in requested

        # the queue: the new model's scores, and the Label next filter lists the requested cases
        dom_click(driver, wait, "//a[@data-testid='stSidebarNavLink'][.//span[normalize-space(.)='Review queue']]")
        wait.until(EC.presence_of_element_located((By.XPATH, "//h1[contains(., 'Review queue')]")))
        wait.until(EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), 'Scored by model {model_id[:12]}')]")))
        dom_check(driver, wait, "Label next")
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), '10 case(s) to label next')]")))
        for case_id in requested:
            wait.until(EC.presence_of_element_located((By.XPATH, open_button(case_id))))
        assert driver.save_screenshot(str(tmp_path / "label_next.png"))

        # the rescored queue's top case says why it was flagged, and its image outlines the region
        rescored = pd.read_parquet(model.parent / "scores.parquet")
        top = rescored[rescored["flagged"]].sort_values("anomaly_percentile", ascending=False, kind="stable").iloc[0]
        assert str(top["explanation"]).startswith(("Most unusual: ", "No single part explains it"))
        dom_check(driver, wait, "Label next")
        open_case_from_queue(driver, wait, str(top["case_id"]))
        wait.until(EC.presence_of_element_located((By.XPATH, "//strong[normalize-space(.)='Why flagged']")))
        shown = wait.until(EC.presence_of_element_located(
            (By.XPATH, "//*[@data-testid='stMarkdownContainer'][starts-with(normalize-space(.), 'Most unusual') "
                       "or starts-with(normalize-space(.), 'No single part')]")))
        assert shown.text == top["explanation"]
        if str(top["explanation"]).startswith("Most unusual: "):  # a region is named: the image outlines it
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".shapelayer path")))
    finally:
        if driver is not None:
            driver.quit()
        app.terminate()
        app.wait(timeout=30)

    engine = make_engine(url)
    assert [(e.action, e.reviewer, e.label, e.note) for e in case_events(engine, decided) if e.action == "assign_class"] == [
        ("assign_class", "dr_lee", "1", "before the rescore")]
    assert set(label_requests(engine)["requested_by"]) == {"ana"}

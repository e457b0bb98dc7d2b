"""End to end in a real browser: headless Chromium against `medssl app` on 127.0.0.1.

Signs in, opens the top flagged case of a real score file, records a decision, reads it back from
the store, and saves a screenshot. Needs Debian's chromium + chromium-driver and selenium:
    apt-get install -y chromium chromium-driver && pip install selenium
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from medssl.review import add_user, case_events, case_state, make_engine
from browser_steps import CHROMEDRIVER, CHROMIUM, headless_chromium, open_case_from_queue, sign_in
from review_scores import build_real_scores


pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="headless browser test needs Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("medssl app did not come up")


@pytest.mark.slow
def test_browser_sign_in_open_case_and_decide(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    scores = build_real_scores(shared_data, tmp_path / "data")
    df = pd.read_parquet(scores)
    top = df[df["flagged"]].sort_values("anomaly_score", ascending=False)["case_id"].iloc[0]
    url = f"sqlite:///{tmp_path / 'review.db'}"
    add_user(make_engine(url), "dr_lee", "clinician", "lee-password")
    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", url, "--scores", str(scores),
                            "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    try:
        _wait_healthy(port, app)
        driver = headless_chromium(tmp_path / "chromium")
        wait = WebDriverWait(driver, 90)
        sign_in(driver, wait, port, "dr_lee", "lee-password")
        open_case_from_queue(driver, wait, top)
        wait.until(EC.element_to_be_clickable((By.XPATH, "//label[contains(., 'Dismiss (false alarm)')]"))).click()
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'textarea[aria-label="Note"]'))).send_keys("artefact, not a finding")
        # the label is the button's <p>; its keyboard shortcut hint follows it (issue 16)
        wait.until(EC.element_to_be_clickable((By.XPATH, "//button[.//p[normalize-space(.)='Save']]"))).click()
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Status: ')]/strong[text()='dismissed']")))
        assert driver.save_screenshot(str(tmp_path / "review_app.png"))
    finally:
        if driver is not None:
            driver.quit()
        app.terminate()
        app.wait(timeout=30)

    engine = make_engine(url)
    assert case_state(engine, top).status == "dismissed"
    decision = [e for e in case_events(engine, top) if e.action == "dismiss"]
    assert [(e.reviewer, e.note) for e in decision] == [("dr_lee", "artefact, not a finding")]
    assert (tmp_path / "review_app.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _CountingHandler:
    """A tiny HTTP server on 127.0.0.1 that records every path a browser asks it for."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.seen = seen
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.slow
def test_browser_fetches_nothing_a_score_file_names(shared_data: Path, tmp_path: Path) -> None:
    """The probe's case in a real browser: a patient id that is a Markdown image and a predicted
    label that is an HTML image, both pointing at a local server, are shown as text and the browser
    never asks that server for anything (queue page and case page)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    leak = _CountingHandler()
    host = f"127.0.0.1:{leak.port}"
    patient = f"![x](http://{host}/leak.png?case=1)"
    scores = build_real_scores(shared_data, tmp_path / "data", n_cases=20, flag_top=6)
    df = pd.read_parquet(scores)
    top = df["anomaly_score"].idxmax()
    case_id = str(df.loc[top, "case_id"])
    df.loc[top, ["patient_id", "predicted_label"]] = [patient, f"<img src=http://{host}/label.png>"]
    df.to_parquet(scores, index=False)
    url = f"sqlite:///{tmp_path / 'review.db'}"
    add_user(make_engine(url), "dr_lee", "clinician", "lee-password")
    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", url, "--scores", str(scores),
                            "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = None
    try:
        _wait_healthy(port, app)
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
        wait = WebDriverWait(driver, 90)
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label="Name"]'))).send_keys("dr_lee")
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Password"]'))).send_keys("lee-password")
        wait.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Sign in']"))).click()
        # the queue shows the patient id as its characters
        wait.until(EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{patient}')]")))
        open_case_from_queue(driver, wait, case_id)
        # the app puts an invisible WORD JOINER into "://" (apps/plain_text.py): compare without it
        visible = "translate(., '\u2060', '')"
        wait.until(EC.presence_of_element_located((By.XPATH, f"//*[contains({visible}, 'patient {patient}')]")))
        wait.until(EC.presence_of_element_located((By.XPATH, f"//*[contains({visible}, '<img src=http://{host}/label.png>')]")))
        active = driver.find_elements(By.CSS_SELECTOR, f"img[src*='{host}'], a[href*='{host}']")
        assert [e.get_attribute("outerHTML") for e in active] == []
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert [r for r in resources if host in r] == []
    finally:
        if driver is not None:
            driver.quit()
        app.terminate()
        app.wait(timeout=30)
        leak.server.shutdown()
    assert leak.seen == []

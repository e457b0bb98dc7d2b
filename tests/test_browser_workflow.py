"""The reviewer workflow in a real browser (issue 16): headless Chromium against one `medssl app`.

A refresh keeps the reviewer signed in (signed token in the URL), a tampered, expired or signed-out
token shows the sign-in page, a deep link opens its case after sign-in, there is no "Deploy"
button, and the login throttle refuses even the right password after ten wrong ones, saying when
to retry. Needs Debian's chromium + chromium-driver and selenium (see tests/test_browser.py).
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from medssl.review import add_user, case_events, issue_token, list_queue, make_engine
from medssl.review.models import utcnow
from review_scores import build_real_scores
from browser_steps import headless_chromium
from test_browser import CHROMEDRIVER, CHROMIUM, _free_port, _wait_healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="headless browser test needs Debian's chromium and chromium-driver "
                       "(apt-get install -y chromium chromium-driver)"),
]
WAIT_MESSAGE = re.compile(r"Too many failed sign-ins: try again after (\d\d:\d\d:\d\d) UTC \(in (\d+) s\)\.")


class Browser:
    """One app server and one headless Chromium for the module."""

    def __init__(self, root: Path, shared_data: Path) -> None:
        pytest.importorskip("selenium.webdriver", reason="pip install selenium")
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait

        self.By, self.EC = By, EC
        self.root = root
        scores = build_real_scores(shared_data, root / "data", n_cases=30, flag_top=8)
        self.url = f"sqlite:///{root / 'review.db'}"
        self.engine = make_engine(self.url)
        add_user(self.engine, "dr_lee", "clinician", "lee-password")
        add_user(self.engine, "dr_kim", "clinician", "kim-password")
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        self.app = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", self.url, "--scores", str(scores),
                                     "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.driver = None
        _wait_healthy(self.port, self.app)
        self.driver = headless_chromium(root / "chromium")
        self.wait = WebDriverWait(self.driver, 90)

    def close(self) -> None:
        if self.driver is not None:
            self.driver.quit()
        self.app.terminate()
        self.app.wait(timeout=30)

    def h1(self, text: str) -> None:
        self.wait.until(self.EC.presence_of_element_located((self.By.XPATH, f"//h1[contains(., '{text}')]")))

    def sign_in_page(self) -> None:
        self.wait.until(self.EC.presence_of_element_located((self.By.CSS_SELECTOR, 'input[aria-label="Name"]')))
        self.h1("medssl review")

    def submit(self, name: str, password: str) -> None:
        self.sign_in_page()
        self.wait.until(self.EC.element_to_be_clickable((self.By.CSS_SELECTOR, 'input[aria-label="Name"]'))).send_keys(name)
        self.wait.until(self.EC.element_to_be_clickable((self.By.CSS_SELECTOR, 'input[aria-label="Password"]'))).send_keys(password)
        self.wait.until(self.EC.element_to_be_clickable((self.By.XPATH, "//button[normalize-space(.)='Sign in']"))).click()

    def alert(self) -> str:
        """The text of the sign-in page's error box once it is shown."""
        xpath = "//*[@data-testid='stAlert']//*[contains(., 'Wrong name or password.') or contains(., 'Too many failed')]"
        return self.wait.until(self.EC.presence_of_element_located((self.By.XPATH, xpath))).text.strip()

    def attempt(self, name: str, password: str) -> str:
        """One sign-in on a fresh page (so an earlier message cannot be mistaken for this one)."""
        self.driver.get(self.base)
        self.submit(name, password)
        return self.alert()


@pytest.fixture(scope="module")
def browser(shared_data: Path, tmp_path_factory) -> Browser:
    b = Browser(tmp_path_factory.mktemp("browser_workflow"), shared_data)
    yield b
    b.close()


def _deploy_elements(b: Browser) -> list:
    return b.driver.find_elements(b.By.XPATH, "//*[normalize-space(text())='Deploy' or @data-testid='stAppDeployButton']")


def test_a_refresh_keeps_the_reviewer_signed_in_and_there_is_no_deploy_button(browser: Browser) -> None:
    b = browser
    b.driver.get(b.base)
    b.submit("dr_lee", "lee-password")
    b.h1("Review queue")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(b.driver.current_url).query)
    assert list(query) == ["session"] and "lee-password" not in b.driver.current_url
    b.wait.until(b.EC.presence_of_element_located((b.By.XPATH, "//button[normalize-space(.)='Open']")))
    assert _deploy_elements(b) == []
    b.driver.refresh()
    b.h1("Review queue")
    assert b.driver.find_elements(b.By.CSS_SELECTOR, 'input[aria-label="Password"]') == []
    b.wait.until(b.EC.presence_of_element_located((b.By.XPATH, "//*[contains(text(), 'Signed in as')]")))
    assert _deploy_elements(b) == []
    assert b.driver.save_screenshot(str(b.root / "queue.png"))  # the queue's columns, for a look


def test_a_tampered_expired_or_signed_out_token_shows_the_sign_in_page(browser: Browser) -> None:
    b = browser
    b.driver.get(b.base)
    b.submit("dr_lee", "lee-password")
    b.h1("Review queue")
    signed_in_url = b.driver.current_url
    token = urllib.parse.parse_qs(urllib.parse.urlparse(signed_in_url).query)["session"][0]
    expired = issue_token(b.engine, "dr_lee", now=utcnow() - dt.timedelta(hours=9))
    for bad in (token[:-4] + ("0000" if not token.endswith("0000") else "1111"), expired):
        b.driver.get(b.base + "?" + urllib.parse.urlencode({"session": bad}))
        b.sign_in_page()
        b.wait.until(b.EC.presence_of_element_located((b.By.XPATH, "//*[contains(text(), 'sign in again')]")))
    b.driver.get(signed_in_url)  # still valid
    b.h1("Review queue")
    b.wait.until(b.EC.element_to_be_clickable((b.By.XPATH, "//a[contains(., 'Sign out')]"))).click()
    b.sign_in_page()
    assert "session=" not in b.driver.current_url
    b.driver.get(signed_in_url)  # the old URL no longer signs in
    b.sign_in_page()
    time.sleep(1)  # give a (wrong) restore time to happen before looking again
    assert b.driver.find_elements(b.By.XPATH, "//h1[contains(., 'Review queue')]") == []


def test_a_signed_in_url_opened_in_another_browser_does_not_sign_in(browser: Browser) -> None:
    b = browser
    b.driver.get(b.base)
    b.submit("dr_lee", "lee-password")
    b.h1("Review queue")
    signed_in_url = b.driver.current_url
    own_agent = b.driver.execute_script("return navigator.userAgent")
    try:  # the same URL sent from another browser (another User-Agent), e.g. pasted into a message
        b.driver.execute_cdp_cmd("Network.setUserAgentOverride", {"userAgent": "Mozilla/5.0 (another browser)"})
        b.driver.get(signed_in_url)
        b.sign_in_page()
        b.wait.until(b.EC.presence_of_element_located((b.By.XPATH, "//*[contains(text(), 'sign in again')]")))
    finally:
        b.driver.execute_cdp_cmd("Network.setUserAgentOverride", {"userAgent": own_agent})
    b.driver.get(signed_in_url)  # back in the browser that signed in: still valid
    b.h1("Review queue")


def test_a_deep_link_opens_its_case_after_sign_in_and_claims_it(browser: Browser) -> None:
    b = browser
    case_id = list_queue(b.engine).rows["case_id"][2]
    b.driver.get(b.base + "?" + urllib.parse.urlencode({"case": case_id}))
    b.sign_in_page()  # a signed-out visitor signs in first
    b.submit("dr_lee", "lee-password")
    b.h1(f"Case {case_id}")
    assert "session=" in b.driver.current_url
    assert [e.action for e in case_events(b.engine, case_id)][-1:] == ["claim"]
    assert [e.reviewer for e in case_events(b.engine, case_id)][-1:] == ["dr_lee"]


def test_ten_wrong_passwords_then_the_right_one_is_refused_with_the_time_to_retry(browser: Browser) -> None:
    b = browser
    shown = [b.attempt("dr_kim", f"wrong-password-{i}") for i in range(10)]
    assert shown[:5] == ["Wrong name or password."] * 5  # five free failures
    assert all(m == "Wrong name or password." or WAIT_MESSAGE.fullmatch(m) for m in shown), shown
    assert any(WAIT_MESSAGE.fullmatch(m) for m in shown[5:]), shown  # the wait starts after five
    # the right password while the wait runs: refused without being checked, saying when to retry
    message = shown[-1]
    for _ in range(6):  # until a wait with a few seconds left is running (a counted failure doubles it)
        found = WAIT_MESSAGE.fullmatch(message)
        if found and int(found.group(2)) >= 4:
            break
        message = b.attempt("dr_kim", "wrong-password-again")
    message = b.attempt("dr_kim", "kim-password")
    found = WAIT_MESSAGE.fullmatch(message)
    assert found, message
    now = dt.datetime.now(dt.timezone.utc)
    retry_at = dt.datetime.combine(now.date(), dt.time.fromisoformat(found.group(1)), dt.timezone.utc)
    if retry_at < now - dt.timedelta(hours=12):
        retry_at += dt.timedelta(days=1)  # the wait runs past midnight
    assert abs((retry_at - (now + dt.timedelta(seconds=int(found.group(2))))).total_seconds()) <= 5
    time.sleep(max(0.0, (retry_at - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1)
    b.driver.get(b.base)
    b.submit("dr_kim", "kim-password")  # after the stated time the right password signs in
    b.h1("Review queue")

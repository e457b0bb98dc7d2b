"""Claim integrity with two reviewers signed in at once (issue 16): two headless Chromium sessions
(separate profiles) against one `medssl app` on 127.0.0.1, on a real score file with embeddings.

dr_lee (A) and dr_kim (B), both clinicians. Checked on the page and in the store:
(a) A opens a case -> B sees it claimed in the queue, and on the case page B's decision form and
    Undo are disabled; (b) A decides -> the claim is released and B can open and claim it;
(c) B decides over A's decision -> asked to confirm, and after confirming both are in the trail;
(d) leaving a case for the queue releases it, and signing out releases all of A's claims;
(e) opening a case from "similar cases" claims it (and releases the case left).
Needs Debian's chromium + chromium-driver and selenium (see tests/test_browser.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from browser_steps import case_heading, headless_chromium
from medssl.review import active_claims, add_user, case_events, case_state, make_engine
from review_scores import build_real_scores
from test_browser import CHROMEDRIVER, CHROMIUM, _free_port, _wait_healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"),
]
WAIT = 90
SAVE = "//button[.//p[normalize-space(.)='Save']]"


def _eventually(check: Callable[[], bool], what: str, seconds: float = WAIT) -> None:
    """Poll the store until ``check()`` holds (the page acts asynchronously)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {what}")


@pytest.fixture(scope="module")
def app(shared_data: Path, tmp_path_factory):
    """One `medssl app` (with --embeddings) for the module: yields (base url, store url, flagged case ids by score)."""
    tmp = tmp_path_factory.mktemp("claims_app")
    scores = build_real_scores(shared_data, tmp / "data")
    df = pd.read_parquet(scores)
    flagged = df[df["flagged"]].sort_values("anomaly_score", ascending=False)["case_id"].tolist()
    url = f"sqlite:///{tmp / 'review.db'}"
    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    add_user(engine, "dr_kim", "clinician", "kim-password")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", url, "--scores", str(scores),
                             "--embeddings", str(tmp / "data" / "embeddings.parquet"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}/", url, flagged
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Reviewer:
    """One browser session (its own Chromium profile) signed in as one reviewer."""

    def __init__(self, base: str, name: str, password: str, profile: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = headless_chromium(profile)
        self.wait = WebDriverWait(self.driver, WAIT)
        self.base, self.name, self.password = base, name, password

    def sign_in(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        self.driver.get(self.base)
        self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label="Name"]'))).send_keys(self.name)
        self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Password"]'))).send_keys(self.password)
        self.wait.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Sign in']"))).click()
        self.wait.until(EC.presence_of_element_located((By.XPATH, "//h1[contains(., 'Review queue')]")))

    def find(self, xpath: str, clickable: bool = False):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        cond = EC.element_to_be_clickable if clickable else EC.presence_of_element_located
        return self.wait.until(cond((By.XPATH, xpath)))

    def click(self, xpath: str) -> None:
        """Scroll the element into the middle of the window (clear of the sticky header), then click it."""
        element = self.find(xpath, clickable=True)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    def nav(self, page: str) -> None:
        """Click a page in the sidebar navigation (a page switch within the same session)."""
        self.click(f"//a[@data-testid='stSidebarNavLink'][.//span[normalize-space(.)='{page}']]")

    def to_queue(self) -> None:
        self.nav("Review queue")
        self.find("//h1[contains(., 'Review queue')]")

    def open_from_queue(self, case_id: str) -> None:
        key = "".join(c if c.isalnum() or c in "_-" else "-" for c in case_id)  # Streamlit's st-key-* class
        self.click(f"//div[contains(@class, 'st-key-open-{key}')]//button")
        self.find(case_heading(case_id))

    def button(self, label: str):
        """The button whose label is exactly ``label`` (a shortcut hint may follow the label)."""
        return self.find(f"//button[.//p[normalize-space(.)='{label}']]")

    def is_disabled(self, label: str) -> bool:
        return self.button(label).get_attribute("disabled") is not None

    def wait_buttons(self, disabled: bool, *labels: str) -> None:
        """Wait until every button in ``labels`` is disabled (or enabled). A rerun draws the page
        element by element, so a button may still be the previous run's for a moment."""
        from selenium.common.exceptions import StaleElementReferenceException

        def settled() -> bool:
            try:
                return all(self.is_disabled(label) == disabled for label in labels)
            except StaleElementReferenceException:
                return False

        state = "disabled" if disabled else "enabled"
        _eventually(settled, f"{', '.join(labels)} {state} for {self.name}")

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def reviewers(app, tmp_path_factory):
    base = app[0]
    tmp = tmp_path_factory.mktemp("profiles")
    a = Reviewer(base, "dr_lee", "lee-password", tmp / "a")
    b = Reviewer(base, "dr_kim", "kim-password", tmp / "b")
    try:
        a.sign_in()
        b.sign_in()
        yield a, b
    finally:
        a.quit()
        b.quit()


def _actions(engine, case_id: str) -> list[tuple[str, str]]:
    return [(e.action, e.reviewer) for e in case_events(engine, case_id)]


def test_a_holds_the_case_b_cannot_decide_it_then_a_decides_and_b_takes_it_over(app, reviewers, tmp_path_factory) -> None:
    _, url, flagged = app
    a, b = reviewers
    engine = make_engine(url)
    case_id = flagged[0]
    shots = tmp_path_factory.mktemp("claim_shots")

    # (a) A opens the case: A holds it; B sees it claimed and cannot decide or undo
    a.open_from_queue(case_id)
    _eventually(lambda: active_claims(engine).get(case_id) == "dr_lee", "A's claim")
    a.find("//*[contains(text(), 'You hold this case until')]")
    a.wait_buttons(False, "Save", "Save and next")
    b.to_queue()
    b.find("//*[contains(text(), 'dr_lee')]")  # the queue's "claimed by" column
    b.open_from_queue(case_id)
    b.find("//*[contains(text(), 'Claimed by dr_lee until')]")
    b.wait_buttons(True, "Save", "Save and next", "Undo last decision")
    b.find("//*[contains(text(), 'dr_lee holds this case')]")  # the caption saying why
    assert active_claims(engine)[case_id] == "dr_lee"  # B's opening took nothing
    b.driver.save_screenshot(str(shots / "b_read_only.png"))

    # (b) A decides: the claim is released in the same step; B can now open and claim it
    a.click("//label[contains(., 'Dismiss (false alarm)')]")
    a.find("//textarea[@aria-label='Note']").send_keys("motion artefact")
    a.click(SAVE)
    _eventually(lambda: case_state(engine, case_id).status == "dismissed", "A's decision")
    _eventually(lambda: case_id not in active_claims(engine), "the release")
    assert _actions(engine, case_id)[-2:] == [("dismiss", "dr_lee"), ("release", "dr_lee")]
    b.to_queue()
    b.open_from_queue(case_id)
    _eventually(lambda: active_claims(engine).get(case_id) == "dr_kim", "B's claim")
    b.find("//*[contains(text(), 'You hold this case until')]")

    # (c) B decides over A's decision: asked first; after confirming, both decisions are in the trail
    b.find("//*[contains(., 'dr_lee decided') and contains(., 'record yours over it?')]")
    b.click("//label[contains(., 'Confirm finding')]")
    b.click(SAVE)
    b.find("//*[contains(text(), 'dr_lee already decided this case: dismissed at') and contains(text(), 'tick')]")
    assert case_state(engine, case_id).decided_by == "dr_lee"
    b.click("//label[contains(., \"Record my decision over dr_lee's\")]")
    b.click("//label[contains(., 'Confirm finding')]")  # the refused form was cleared
    b.click(SAVE)
    _eventually(lambda: case_state(engine, case_id).decided_by == "dr_kim", "B's decision over A's")
    b.find("//*[contains(text(), 'Status: ')]/strong[text()='confirmed']")
    decisions = [(e.action, e.reviewer, e.note) for e in case_events(engine, case_id) if e.action in ("dismiss", "confirm")]
    assert decisions == [("dismiss", "dr_lee", "motion artefact"), ("confirm", "dr_kim", None)]
    assert case_state(engine, case_id).status == "confirmed" and case_id not in active_claims(engine)
    b.driver.save_screenshot(str(shots / "b_after_override.png"))


def test_leaving_a_case_and_signing_out_release_claims(app, reviewers) -> None:
    _, url, flagged = app
    a, b = reviewers
    engine = make_engine(url)
    left, kept = flagged[3], flagged[4]
    a.to_queue()
    a.open_from_queue(left)
    _eventually(lambda: active_claims(engine).get(left) == "dr_lee", "A's claim on the first case")
    a.to_queue()  # back to the queue: the case left is released
    _eventually(lambda: left not in active_claims(engine), "release on leaving")
    assert _actions(engine, left)[-1] == ("release", "dr_lee")
    a.open_from_queue(kept)
    _eventually(lambda: active_claims(engine).get(kept) == "dr_lee", "A's claim on the second case")
    a.nav("Sign out")  # (d) signing out releases every claim of A
    a.find("//input[@aria-label='Name']")
    _eventually(lambda: "dr_lee" not in active_claims(engine).values(), "release on sign-out")
    assert _actions(engine, kept)[-1] == ("release", "dr_lee")
    b.to_queue()
    b.open_from_queue(kept)  # B can take it at once
    _eventually(lambda: active_claims(engine).get(kept) == "dr_kim", "B's claim after A signed out")


def test_opening_a_similar_case_claims_it(app, reviewers) -> None:
    _, url, flagged = app
    a, _ = reviewers
    engine = make_engine(url)
    reviewed = flagged[0]  # decided in the first test: "similar cases" lists reviewed cases only
    a.sign_in()
    start = flagged[6]
    a.open_from_queue(start)
    _eventually(lambda: active_claims(engine).get(start) == "dr_lee", "A's claim on the case opened")
    a.click(f"//button[.//p[contains(., '{reviewed} ·')]]")
    a.find(case_heading(reviewed))
    _eventually(lambda: active_claims(engine).get(reviewed) == "dr_lee", "the claim by opening a similar case")
    assert start not in active_claims(engine)  # the case left was released
    a.find("//*[contains(text(), 'You hold this case until')]")


def test_save_and_next_by_keyboard_while_typing_the_note(app, reviewers) -> None:
    """Alt+N pressed in the note field saves what was chosen and typed, then opens the next open
    case (claimed); the case left is released by its decision."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _, url, flagged = app
    a, _ = reviewers
    engine = make_engine(url)
    case_id = flagged[8]
    a.to_queue()
    a.open_from_queue(case_id)
    a.click("//label[contains(., 'Assign a class')]")
    a.find("//input[contains(@aria-label, 'Class (for')]").send_keys("1")
    a.find("//textarea[@aria-label='Note']").send_keys("typed, then Alt+N")
    ActionChains(a.driver).key_down(Keys.ALT).send_keys("n").key_up(Keys.ALT).perform()
    a.find(case_heading(flagged[9]))
    decision = [(e.action, e.reviewer, e.label, e.note) for e in case_events(engine, case_id) if e.action == "assign_class"]
    assert decision == [("assign_class", "dr_lee", "1", "typed, then Alt+N")]
    _eventually(lambda: active_claims(engine).get(flagged[9]) == "dr_lee", "the next case claimed")
    assert case_id not in active_claims(engine)



def test_a_claim_running_out_shows_on_the_open_page(app, reviewers) -> None:
    """The claim banner redraws itself (every 30 s): when A's claim runs out while A looks at the
    case, the page says nobody holds it and disables the form, without A doing anything."""
    import datetime as dt

    from sqlalchemy import update

    from medssl.review.models import Claim, utcnow

    _, url, flagged = app
    a, _ = reviewers
    engine = make_engine(url)
    case_id = flagged[9]  # A holds it since the keyboard test (save and next opened it)
    assert active_claims(engine).get(case_id) == "dr_lee"
    a.find(case_heading(case_id))
    a.wait_buttons(False, "Save")
    with engine.begin() as conn:
        conn.execute(update(Claim).where(Claim.case_id == case_id).values(expires_at=utcnow() + dt.timedelta(seconds=2)))
    a.find("//*[contains(text(), 'Deciding and undoing are disabled: nobody holds this case')]")
    a.wait_buttons(True, "Save", "Undo last decision")
    # the banner drawn before the claim ran out goes once the rerun has finished drawing
    _eventually(lambda: not a.driver.find_elements("xpath", "//*[contains(text(), 'You hold this case')]"),
                "the old 'You hold this case' banner gone")

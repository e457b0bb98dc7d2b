"""Steps shared by the real-browser tests (headless Chromium against ``medssl app``)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def headless_chromium(profile: Path, window: str = "1400,1000"):
    """Debian's Chromium, headless, driven by its chromedriver: its own profile folder ``profile``,
    no background network, a ``window`` ("width,height") large enough for the app's pages."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={window}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


def sign_in(driver, wait, port: int, name: str, password: str) -> None:
    """Open the app on 127.0.0.1:``port``, sign in as ``name`` and wait for the review queue."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    driver.get(f"http://127.0.0.1:{port}/")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label="Name"]'))).send_keys(name)
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Password"]'))).send_keys(password)
    dom_click(driver, wait, "//button[normalize-space(.)='Sign in']")
    wait.until(EC.presence_of_element_located((By.XPATH, "//h1[contains(., 'Review queue')]")))


def case_heading(case_id: str) -> str:
    """XPath of the case page's title for exactly ``case_id`` ("Case val:1" must not match "Case val:14")."""
    return f"//h1[normalize-space(.)='Case {case_id}']"


def open_button(case_id: str) -> str:
    """XPath of the queue row's Open button for ``case_id`` (Streamlit's ``st-key-open-<id>`` class)."""
    key = "".join(c if c.isalnum() or c in "_-" else "-" for c in case_id)
    return f"//div[contains(concat(' ', normalize-space(@class), ' '), ' st-key-open-{key} ')]//button"


def open_case_from_queue(driver, wait, case_id: str) -> None:
    """Click ``case_id``'s Open button on the queue page and wait for that case's page.

    The click is a DOM click on the row's own button, not a mouse click at its screen position: a
    rerun that shifts the rows between finding the button and clicking it would otherwise open the
    neighbouring case."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    button = wait.until(EC.element_to_be_clickable((By.XPATH, open_button(case_id))))
    driver.execute_script("arguments[0].click();", button)
    wait.until(EC.presence_of_element_located((By.XPATH, case_heading(case_id))))


def dom_click(driver, wait, xpath: str):
    """Wait until the element at ``xpath`` is clickable, then click it through the DOM (a rerun that
    moves the page between finding and clicking cannot send the click elsewhere); returns it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    element = wait.until(EC.element_to_be_clickable((By.XPATH, xpath)))
    driver.execute_script("arguments[0].click();", element)
    return element


def button_labelled(label: str) -> str:
    """XPath of the button whose label is exactly ``label`` (a keyboard shortcut hint may follow it)."""
    return f"//button[.//p[normalize-space(.)=\"{label}\"]]"


def dom_check(driver, wait, label: str) -> None:
    """Click the radio option, checkbox or toggle whose label is exactly ``label``: wait until its
    label is clickable, then click its (visually hidden) input through the DOM; a DOM click on
    the label itself does not reach Streamlit's toggle."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    xpath = f"//label[.//p[normalize-space(.)=\"{label}\"]]"
    wait.until(EC.element_to_be_clickable((By.XPATH, xpath)))
    driver.execute_script("arguments[0].click();", driver.find_element(By.XPATH, xpath + "//input"))

"""The trajectory viewer in a real browser: Debian's chromium, driven through chromedriver by Selenium.

A real oracle run and a random run (with hostile episodes added) are built into views, opened from disk
(file://, no server), filtered, searched, opened episode by episode, compared side by side, and checked for
agent text that would run as code. Screenshots go to pytest's tmp folder and tests/.artifacts/ (printed).
Install: `apt-get install -y chromium chromium-driver` and `pip install selenium`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from toolgym.agent.viewer import build_view

from tests.agent.test_viewer import (
    HOSTILE_IMG,
    HOSTILE_SCRIPT,
    HOSTILE_TASK,
    add_rows,
    hostile_rows,
    oracle_rollout,
)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is missing: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is missing: pip install selenium"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        _skip_or_fail(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    oracle = oracle_rollout(root / "oracle")
    random = oracle_rollout(root / "random", "random")
    add_rows(random, hostile_rows())
    return {
        "oracle": build_view(oracle),
        "random": build_view(random),
        "compare": build_view(random, compare=oracle),
    }


def open_page(driver, page: Path, hash_: str = "") -> None:
    driver.get(page.as_uri() + ("#" + hash_ if hash_ else ""))
    wait(
        driver,
        lambda: driver.execute_script("return window.TG_FIRST_LIST_MS || document.querySelector('.side h2')"),
    )


def wait(driver, ready, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = ready()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"the page did not get there in {timeout} s; console: {driver.get_log('browser')}")


def shot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")  # screenshots are test output, never committed
    shutil.copy(path, ARTIFACTS / name)
    print(f"screenshot: {path} (copy: {ARTIFACTS / name})")
    return path


def text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def list_rows(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#list-body tr")]


def test_filter_search_and_open_an_episode(browser, views, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, views["oracle"])
    assert text(browser, "#count") == "22 of 22 episodes" and len(list_rows(browser)) == 22
    Select(browser.find_element(By.ID, "f-category")).select_by_value("general")
    wait(browser, lambda: text(browser, "#count").startswith("10 of"))
    assert "category=general" in browser.current_url and len(list_rows(browser)) == 10
    Select(browser.find_element(By.ID, "f-difficulty")).select_by_value("3")
    wait(browser, lambda: text(browser, "#count").startswith("2 of"))
    assert {r.split()[0] for r in list_rows(browser)} == {"order_desk-004", "trip_planning-001"}
    # search over the prompts (loaded after the first list) and the tool names
    box = browser.find_element(By.ID, "q")
    box.send_keys("cancel")
    wait(browser, lambda: "q=cancel" in browser.current_url and text(browser, "#count").startswith("1 of"))
    assert list_rows(browser)[0].startswith("order_desk-004")
    box.clear()
    box.send_keys("find_customer")
    wait(
        browser,
        lambda: "q=find_customer" in browser.current_url and text(browser, "#count").startswith("1 of"),
    )
    browser.find_element(By.LINK_TEXT, "order_desk-004").click()
    side = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#side-a .verdict"))[0]
    assert "the database is in the expected state" in side.text and "reward 1.000" in side.text
    steps = browser.find_elements(By.CSS_SELECTOR, "#side-a .item.step")
    assert len(steps) == 8
    reasoning = browser.find_elements(By.CSS_SELECTOR, "#side-a details.reasoning")
    assert reasoning and not any(d.get_attribute("open") for d in reasoning)  # collapsed by default
    assert "dropped from the context at user turn 2" in reasoning[0].text
    assert "kept in the context" in reasoning[-1].text
    hidden = reasoning[0].find_element(By.TAG_NAME, "pre")
    assert not hidden.is_displayed()
    summary = reasoning[0].find_element(By.TAG_NAME, "summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    assert hidden.is_displayed() and "find_customer" in hidden.text
    call = steps[0].find_element(By.CSS_SELECTOR, ".call")
    assert "find_customer" in call.text and "dara.rossi@example.com" in call.text and "result" in call.text
    assert "model" in text(browser, "#side-a .timing") and "tools" in text(browser, "#side-a .timing")
    shot(browser, tmp_path, "viewer.png")
    browser.find_element(By.ID, "back").click()
    wait(browser, lambda: text(browser, "#count").startswith("1 of"))  # the filters survive the round trip
    assert browser.find_element(By.ID, "f-difficulty").get_attribute("value") == "3"


def test_error_kind_filter_and_per_call_errors(browser, views, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, views["random"], "error=tool_error&category=search")
    assert text(browser, "#count") == "5 of 24 episodes"
    browser.find_element(By.LINK_TEXT, "search-000").click()
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#side-a .verdict"))
    badges = browser.find_elements(By.CSS_SELECTOR, "#side-a .call .badge.err")
    assert badges and {b.text for b in badges} == {"tool_error"}


def test_compare_mode_side_by_side_and_flipped(browser, views, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, views["compare"], "flipped=fixed")
    assert text(browser, "#count") == "22 of 24 episodes"  # random failed every task the oracle passed
    open_page(browser, views["compare"], "flipped=broken")
    assert text(browser, "#count") == "0 of 24 episodes"
    open_page(browser, views["compare"], "flipped=any&category=search")
    browser.find_element(By.LINK_TEXT, "search-001").click()
    wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, ".side .verdict")) == 2)
    a, b = text(browser, "#side-a h2"), text(browser, "#side-b h2")
    assert a == "A: random - search-001#0" and b == "B: oracle - search-001#0"
    assert "reward 0.000" in text(browser, "#side-a .verdict") and "reward 1.000" in text(
        browser, "#side-b .verdict"
    )
    shot(browser, tmp_path, "viewer-compare.png")


def test_hostile_agent_text_is_shown_as_text_and_never_runs(browser, views, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, views["random"], "ep=" + quote(HOSTILE_TASK + "#1", safe=""))
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#side-a .verdict"))
    for d in browser.find_elements(By.CSS_SELECTOR, "details"):
        browser.execute_script("arguments[0].open = true", d)
    page = browser.find_element(By.ID, "episode-view").text
    assert f"Find it {HOSTILE_SCRIPT} now {HOSTILE_IMG}" in page
    assert "verdict " + HOSTILE_IMG in page and "second answer " + HOSTILE_SCRIPT in page
    assert "think " + HOSTILE_SCRIPT in page and "malformed output" in page
    assert browser.execute_script("return [window.pwned, window.pwned2, document.images.length]") == [
        None,
        None,
        0,
    ]
    assert browser.execute_script("return document.scripts.length") <= 5  # the page's, index, text, one chunk
    shot(browser, tmp_path, "viewer-hostile.png")
    open_page(browser, views["random"], "q=" + quote("hostile&<1>"))
    assert text(browser, "#count") == "2 of 24 episodes"
    assert browser.execute_script("return [window.pwned, window.pwned2, document.images.length]") == [
        None,
        None,
        0,
    ]

"""The back-office end to end in a real browser (Debian's headless Chromium).

A real daphne process serves the admin on the test database, a simulated
charger (``manage.py simulate_charger``, the ocpp library's client) is
connected to it, and Selenium drives Chromium through the support agent's and
the superuser's common tasks. Screenshots of each page go to
``artifacts/admin/`` (git-ignored); docs/admin.md names them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mobileapi.models import ApiKey
from stations.models import Station, Transaction
from tests.admin_support import PASSWORD, make_superuser, make_support
from tests.conftest import ROOT, server_database_url

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(ROOT) / "artifacts" / "admin"
WAIT = 15.0


def wait_until(check: Callable[[], object], timeout: float = WAIT, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def browser() -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = "Debian's chromium and chromium-driver are not installed (make test installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="csms-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1100", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def live(daphne_process) -> Iterator[str]:
    """The admin on a daphne process, with charger fora072 (2 connectors) connected to it."""
    ws_url, _ = daphne_process({"DJANGO_DEBUG": "true", "OCPP_COMMAND_TIMEOUT": "10", "LOG_LEVEL": "WARNING"})
    charger = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_charger", "fora072", "--connectors", "2", "--meter-interval", "1",
         "--url", f"{ws_url}/ocpp"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": server_database_url(), "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        try:
            wait_until(lambda: Station.objects.filter(pk="fora072", is_online=True, connectors__number=2).exists(),
                       what="charger fora072 online")
        except AssertionError:
            charger.terminate()
            raise AssertionError(f"charger did not come online: {charger.communicate(timeout=10)[1][-2000:]}")
        yield ws_url.replace("ws://", "http://")
    finally:
        charger.terminate()
        charger.wait(10)


def shot(driver, name: str) -> None:
    """A screenshot of the whole page (the window grows to the page's height for it)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height, 700), 4000))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1400, 1100)


def login(driver, base: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/admin/login/?next=/admin/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: driver.find_elements(By.ID, "dashboard"), what=f"{username} logged in")


def messages_shown(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]


def test_support_agent_starts_a_charge_and_reads_its_chart(live, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    make_support("agent")
    login(browser, live, "agent")
    dashboard = browser.find_element(By.ID, "dashboard").text
    assert "1 online" in dashboard and "Available: 2" in dashboard
    # Support sees API keys but may not add them; it may add idTags.
    assert not browser.find_elements(By.CSS_SELECTOR, "tr.model-apikey a.addlink")
    assert browser.find_elements(By.CSS_SELECTOR, "tr.model-idtag a.addlink")
    shot(browser, "01-dashboard")

    browser.get(f"{live}/admin/stations/station/")
    assert "fora072" in browser.find_element(By.ID, "result_list").text
    shot(browser, "02-stations")
    browser.find_element(By.LINK_TEXT, "fora072").click()
    form = wait_until(lambda: browser.find_elements(By.ID, "op-remote_start"), what="remote start form")[0]
    shot(browser, "03-station")
    Select(form.find_element(By.NAME, "connector")).select_by_value("1")
    form.find_element(By.NAME, "id_tag").send_keys("SUPPORT-7")
    form.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    shown = wait_until(lambda: messages_shown(browser), what="the charger's answer")
    assert any("RemoteStartTransaction on connector 1: the charger answered Accepted" in m for m in shown), shown
    shot(browser, "04-remote-start-answer")

    tx = wait_until(lambda: Transaction.objects.filter(station_id="fora072", id_tag="SUPPORT-7").first(),
                    what="transaction started")
    assert tx.started_by_user.username == "agent"
    # Enough meter samples for a chart (the charger sends one a second).
    wait_until(lambda: tx.meter_samples.filter(power_w__gt=0).count() >= 3, what="meter samples")
    browser.get(f"{live}/admin/stations/transaction/")
    row = browser.find_element(By.ID, "result_list").text
    assert "SUPPORT-7" in row and "staff: agent" in row and "Active" in row
    shot(browser, "05-transactions")
    browser.find_element(By.LINK_TEXT, str(tx.pk)).click()
    chart = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.tx-chart"), what="chart")[0]
    assert chart.is_displayed() and chart.size["width"] > 300 and chart.size["height"] > 150
    power = browser.find_element(By.CSS_SELECTOR, "svg.tx-chart polyline.series-power")
    assert len(power.get_attribute("points").split()) >= 3
    shot(browser, "06-transaction-chart")

    browser.get(f"{live}/admin/stations/station/fora072/configuration/")
    browser.find_element(By.CSS_SELECTOR, "#read-configuration input[type=submit]").click()  # reading is a POST
    table = wait_until(lambda: browser.find_elements(By.ID, "configuration"), what="configuration table")[0]
    assert "HeartbeatInterval" in table.text
    shot(browser, "07-configuration")
    # What the group excludes stays out of reach in the browser too.
    browser.get(f"{live}/admin/mobileapi/apikey/add/")
    assert "403" in browser.title or "Forbidden" in browser.page_source


def test_superuser_creates_an_api_key_and_sees_it_once(live, browser):
    from selenium.webdriver.common.by import By

    make_superuser("root")
    login(browser, live, "root")
    browser.get(f"{live}/admin/mobileapi/apikey/add/")
    browser.find_element(By.ID, "id_name").send_keys("Partner app")
    for checkbox in browser.find_elements(By.CSS_SELECTOR, "input[name=scopes]"):
        checkbox.click()
    browser.find_element(By.NAME, "_save").click()
    secret = wait_until(lambda: browser.find_elements(By.ID, "secret"), what="the new key")[0].text
    assert re.fullmatch(r"csk_[A-Za-z0-9_-]{20,}", secret)
    shot(browser, "08-api-key-created")
    key = ApiKey.objects.get(name="Partner app")
    assert sorted(key.scopes) == ["read:stations", "write:charging"] and secret.startswith(key.prefix)
    browser.find_element(By.LINK_TEXT, "Done").click()
    wait_until(lambda: "Partner app" in browser.page_source, what="key page")
    assert secret not in browser.page_source
    browser.get(f"{live}/admin/mobileapi/apikey/")
    assert secret not in browser.page_source and f"{key.prefix}…" in browser.page_source
    shot(browser, "09-api-keys")

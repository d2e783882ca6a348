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
from django.utils import timezone

from mobileapi import services as mobile_services
from mobileapi.models import ApiKey, MobileSession
from stations.models import IdTag, Station, Tariff, Transaction
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


WIDTHS = (1366, 1920)
# What the support agent clicks, types into or reads as a control.
CONTROLS = "a, button, input:not([type=hidden]), select, textarea, summary, .button, label"
LAYOUT_PROBLEMS = """
const problems = [];
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) problems.push(`page scrolls sideways: ${doc.scrollWidth} > ${doc.clientWidth}`);
for (const el of document.querySelectorAll("body *")) {
  const style = getComputedStyle(el);
  if (["auto", "scroll"].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
    problems.push(`${el.tagName}#${el.id}.${el.className} scrolls sideways: ${el.scrollWidth} > ${el.clientWidth}`);
}
for (const band of document.querySelectorAll("#content h2, #content summary")) {
  const r = band.getBoundingClientRect();
  const filled = !["transparent", "rgba(0, 0, 0, 0)"].includes(getComputedStyle(band).backgroundColor);
  if (filled && r.height > 45)  // a coloured section header is one line, never a tall empty band
    problems.push(`heading "${band.innerText.trim().slice(0, 40)}" is a ${Math.round(r.height)} px band`);
}
const visible = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  const folded = el.closest("details:not([open])") && !el.closest("summary");  // laid out, never shown
  return !folded && r.width > 1 && r.height > 1 && s.visibility !== "hidden" && s.display !== "none"
    && el.offsetParent !== null; };
const controls = [...document.querySelectorAll(arguments[0])].filter(visible)
  .filter(el => !el.closest("#nav-sidebar, .toggle-nav-sidebar, #header"));
const label = el => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.className ? "." + el.className : ""}` +
  `[${(el.innerText || el.value || el.name || el.getAttribute("for") || "").trim().slice(0, 30)}]`;
// A control over a table cell it is not in covers that cell's text (the object tools over a row).
const cells = [...document.querySelectorAll("#content td, #content th")].filter(visible)
  .filter(cell => !cell.closest(".visually-hidden"));
for (const control of controls) {
  const rc = control.getBoundingClientRect();
  for (const cell of cells) {
    if (cell.contains(control) || control.contains(cell)) continue;
    const r = cell.getBoundingClientRect();
    const w = Math.min(rc.right, r.right) - Math.max(rc.left, r.left);
    const h = Math.min(rc.bottom, r.bottom) - Math.max(rc.top, r.top);
    if (w > 2 && h > 2) { problems.push(`${label(control)} covers a cell [${cell.innerText.trim().slice(0, 30)}]`); break; }
  }
}
for (let i = 0; i < controls.length; i++) {
  const a = controls[i], ra = a.getBoundingClientRect();
  for (let j = i + 1; j < controls.length; j++) {
    const b = controls[j];
    if (a.contains(b) || b.contains(a)) continue;
    const rb = b.getBoundingClientRect();
    const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
    const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
    if (w > 2 && h > 2) problems.push(`${label(a)} overlaps ${label(b)} by ${Math.round(w)}x${Math.round(h)} px`);
  }
}
return problems;
"""


def shot(driver, name: str) -> None:
    """At 1366 and 1920 px: no sideways scroll, no overlapping controls; a full-page screenshot of each.

    The screenshots go to artifacts/admin/<name>-<width>.png (git-ignored).
    """
    url = driver.current_url
    problems = []
    for width in WIDTHS:
        driver.set_window_size(width, 1000)
        wait_until(lambda: driver.execute_script("return window.innerWidth") <= width, what=f"window {width} wide")
        found = driver.execute_script(LAYOUT_PROBLEMS, CONTROLS)
        problems += [f"{width} px: {problem}" for problem in found]
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(height, 700), 5000))
        driver.save_screenshot(str(ARTIFACTS / f"{name}-{width}.png"))
    driver.set_window_size(1400, 1100)
    assert not problems, f"{name} ({url}):\n" + "\n".join(problems)


FIRST_SCREEN = 650  # px of page a 1366x768 laptop shows under the browser's own bars


def first_screen(driver, tx_id: int) -> None:
    """Status, connectors and the live transaction without scrolling; events one line each."""
    from selenium.webdriver.common.by import By

    for width in WIDTHS:
        driver.set_window_size(width, 1000)
        status = driver.find_element(By.ID, "station-status")
        live = driver.find_element(By.CSS_SELECTOR, "#connectors tr.connector-1")
        assert f"#{tx_id}" in live.text and "kWh" in live.text and "kW" in live.text, live.text
        bottom = driver.execute_script("return arguments[0].getBoundingClientRect().bottom", live)
        assert status.is_displayed() and bottom <= FIRST_SCREEN, f"{width} px: the live transaction ends at {bottom} px"
        rows = driver.find_elements(By.CSS_SELECTOR, "#recent-events tbody tr")
        assert rows and not driver.find_elements(By.CSS_SELECTOR, ".field-recent_events, #connectors-group")
        for row in rows:
            assert "{" not in row.text and "meter.update" not in row.text, row.text
            height = driver.execute_script("return arguments[0].getBoundingClientRect().height", row)
            assert height < 40, f"{width} px: an event takes {height} px: {row.text}"


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
    browser.get(f"{live}/admin/stations/station/fora072/change/")
    first_screen(browser, tx.pk)
    shot(browser, "04b-station-charging")
    browser.get(f"{live}/admin/stations/transaction/")
    row = browser.find_element(By.ID, "result_list").text
    assert "SUPPORT-7" in row and "staff: agent" in row and "Active" in row
    shot(browser, "05-transactions")
    # Every list with a realistic row in it (an empty list fits any width).
    key, _ = mobile_services.create_api_key("Fleet partner app (production)", ["read:stations", "write:charging"],
                                            ["SUPPORT-7"])
    now = timezone.now()
    MobileSession.objects.create(
        connection_id="c0ffee" * 5, endpoint="/mobile-client", api_key=key, session_id="sess-" + "a" * 32,
        server="csms-worker-1.internal:12345", client_address="203.0.113.77", connected_at=now,
        last_message_at=now, seen_at=now,
        subscriptions=[{"id": "sub-1", "stationId": "fora072", "events": ["transaction.*", "meter.update"]},
                       {"id": "sub-2", "stationId": None, "events": ["connector.status.changed"]}],
    )
    Tariff.objects.create(name="Standard AC 22 kW", price_per_kwh="0.39", price_per_minute="0.02",
                          session_fee="0.50", currency="EUR")
    IdTag.objects.create(id_tag="FLEET-0042-ABCDEFGH", note="Company car pool, building C, contact facilities desk")
    for name, path in (("05b-events", "csms/event"), ("05c-api-keys", "mobileapi/apikey"),
                       ("05d-mobile-sessions", "mobileapi/mobilesession"), ("05e-idtags", "stations/idtag"),
                       ("05f-tariffs", "stations/tariff"), ("05g-server-processes", "stations/serverprocess")):
        browser.get(f"{live}/admin/{path}/")
        wait_until(lambda: browser.find_elements(By.ID, "changelist"), what=f"{path} list")
        shot(browser, name)
    browser.get(f"{live}/admin/stations/transaction/{tx.pk}/change/")
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

    # An offline station: every command greyed out, with the reason; registration still works.
    offline = Station.objects.create(pk="fora099", is_online=False, vendor="Fora", model="F-22")
    for number in (0, 1, 2):
        offline.connectors.create(number=number, status="Available")
    browser.get(f"{live}/admin/stations/station/fora099/change/")
    panel = wait_until(lambda: browser.find_elements(By.ID, "operate"), what="the panel")[0]
    assert "The charger is offline" in panel.text
    buttons = panel.find_elements(By.CSS_SELECTOR, "input[type=submit], button")
    enabled = [b.text or b.get_attribute("value") for b in buttons if b.is_enabled()]
    assert enabled == ["Reject"], enabled  # the registration button (a database change)
    shot(browser, "10-station-offline")

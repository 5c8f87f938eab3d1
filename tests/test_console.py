"""The dead-letter console (``python -m dlq.web``): its JSON API, and its pages in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import os
import random
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from confluent_kafka import Producer

from devbroker import free_port
from domain.headers import DLQ_REASON, REASON_EXHAUSTED, REPLAYED_AT
from runtime.provenance import source_of
from tests.kafka_helpers import Script, ScriptRunner, Topics, create_topics, read_all, wait_until
from tests.pipeline_expectations import ForeignBatch, write_foreign_orders

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_KEY = "<img src=x onerror=alert(1)>"
TOKEN = "test-token-for-the-console"
FAST_BACKOFF = ["--backoff-base", "0.2", "--backoff-factor", "2", "--backoff-max", "0.4"]


def call(url: str, body: Optional[dict] = None, token: Optional[str] = None) -> tuple[int, Any]:
    """One request to the console: its status and decoded JSON answer."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers,
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_console(runner: ScriptRunner, *args: str) -> tuple[Script, str]:
    port = free_port()
    console = runner.start("dlq.web", "--port", str(port), *args, name="console")
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return call(f"{url}/api/summary")[0] == 200
        except OSError:
            return False

    runner.wait_until(answering, 60, what="the console to answer")
    return console, url


def all_dead_letters(url: str, query: str = "", limit: int = 7) -> list[dict]:
    """Every page of /api/dead-letters, following the cursors."""
    items: list[dict] = []
    cursor: Optional[str] = None
    while True:
        status, page = call(f"{url}/api/dead-letters?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        items += page["items"]
        cursor = page["cursor"]
        if cursor is None:
            return items


def write_hostile_key(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=HOSTILE_KEY.encode(), value=b"<script>alert(2)</script>",
                     headers=[("note", b"<b>bold</b>")])
    assert producer.flush(30) == 0


def dead_letters_of(runner: ScriptRunner, bootstrap: str, topics: Topics, fail_product: Optional[str]) -> ForeignBatch:
    """Foreign orders and poison, one record with a hostile key, through the main and retry consumers into the DLQ."""
    create_topics(bootstrap, topics.pipeline())
    batch = write_foreign_orders(bootstrap, topics.orders, 60, random.Random(21))
    write_hostile_key(bootstrap, topics.orders)
    exhausted = sum(1 for order in batch.valid if order["product"] == fail_product)
    main = runner.start("consumer.main_consumer", *(("--fail-product", fail_product) if fail_product else ()),
                        *FAST_BACKOFF, name="main")
    retry = runner.start("retry.retry_consumer", "--max-retries", "1", *FAST_BACKOFF, name="retry")
    expected = len(batch.poison) + 1 + exhausted
    runner.wait_until(lambda: len(read_all(bootstrap, topics.dlq)) >= expected, 120, what="the dead letters")
    assert main.stop() == 0 and retry.stop() == 0
    return batch


def test_the_api_pages_filters_describes_and_guards_replay(runner: ScriptRunner, topics: Topics, bootstrap: str):
    batch = dead_letters_of(runner, bootstrap, topics, fail_product=None)
    expected = len(batch.poison) + 1
    console, url = start_console(runner, "--token", TOKEN)
    runner.wait_until(lambda: call(f"{url}/api/dead-letters?limit=1000")[1]["items"].__len__() == expected, 60,
                      what="the console to index every dead letter")

    items = all_dead_letters(url)
    assert len(items) == expected == len({(i["partition"], i["offset"]) for i in items}), "paging repeats nothing"
    assert all({"key", "reason", "partition", "offset", "error_class", "attempts", "origin", "replayed"} <= set(i)
               for i in items)
    undecodable = all_dead_letters(url, "&reason=undecodable")
    assert 0 < len(undecodable) < expected and all("undecodable" in i["reason"] for i in undecodable)
    assert [i["key"] for i in all_dead_letters(url, f"&key={urllib.request.quote(HOSTILE_KEY)}")] == [HOSTILE_KEY]
    assert all_dead_letters(url, "&until=2000-01-01T00:00:00Z") == []

    hostile = next(i for i in items if i["key"] == HOSTILE_KEY)
    status, letter = call(f"{url}/api/dead-letters/{hostile['partition']}/{hostile['offset']}")
    assert status == 200 and letter["order"] is None and letter["undecodable"]
    assert letter["value_hex"] == b"<script>alert(2)</script>".hex()
    assert {"name": "note", "value": "<b>bold</b>"} in letter["headers"]
    assert any(h["name"] == DLQ_REASON for h in letter["headers"])

    assert call(f"{url}/api/dead-letters/{hostile['partition']}/999999")[0] == 404
    assert call(f"{url}/api/dead-letters/x/1")[0] == 422
    status, answer = call(f"{url}/api/dead-letters?since=yesterday")
    assert status == 400 and "not a time" in answer["detail"]
    assert call(f"{url}/api/dead-letters?cursor=tomorrow")[0] == 400
    times = [i["timestamp_ms"] for i in items]
    assert times == sorted(times, reverse=True), "newest first, across partitions"

    chosen = {"dead_letters": [{"partition": hostile["partition"], "offset": hostile["offset"]}], "dry_run": False}
    assert call(f"{url}/api/replay", chosen)[0] == 401
    assert call(f"{url}/api/replay", chosen, token="wrong")[0] == 401
    assert call(f"{url}/api/replay", {"filter": {"since": "soon"}}, token=TOKEN)[0] == 400
    assert read_all(bootstrap, topics.redrive) == [], "a refused replay changes nothing"

    paths = call(f"{url}/openapi.json")[1]["paths"]
    assert {"/api/summary", "/api/dead-letters", "/api/dead-letters/{partition}/{offset}", "/api/replay"} <= set(paths)
    summary = call(f"{url}/api/summary")[1]
    assert summary["dead_lettered"] == expected and summary["processed"] == len(batch.valid)
    assert {"average", "retried", "retry_backlog", "lag"} <= set(summary)
    assert console.stop() == 0

    read_only, url = start_console(runner, "--token", TOKEN, "--read-only")
    assert call(f"{url}/api/replay", chosen, token=TOKEN)[0] == 403
    assert read_only.stop() == 0
    assert read_all(bootstrap, topics.redrive) == []
    runner.assert_healthy()


# ---- in a real browser ----

def chromium() -> Iterator[Any]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        message = "headless Chromium is missing (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()


def screenshot(browser: Any, name: str, tmp_path: Path) -> None:
    """To docs/images with UPDATE_SCREENSHOTS=1 (the README shows them), else beside the test's logs."""
    folder = ROOT / "docs" / "images" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(exist_ok=True)
    browser.save_screenshot(str(folder / name))


def test_the_console_in_a_browser_lists_filters_shows_and_replays_each_dead_letter_once(
        runner: ScriptRunner, topics: Topics, bootstrap: str, browser: Any, tmp_path: Path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    batch = dead_letters_of(runner, bootstrap, topics, fail_product="Item3")
    exhausted = [order for order in batch.valid if order["product"] == "Item3"]
    processed = len(batch.valid) - len(exhausted)
    assert len(exhausted) >= 3
    fixed = runner.start("consumer.main_consumer", *FAST_BACKOFF, name="main-fixed")  # Item3 works again
    console, url = start_console(runner, "--token", TOKEN)

    def figure(name: str) -> str:
        return browser.find_element(By.ID, name).text

    def replays() -> list:
        """Replayed copies in the re-drive topic (the retry consumer's re-drives are there too)."""
        return [record for record in read_all(bootstrap, topics.redrive) if record.header(REPLAYED_AT)]

    browser.get(url)
    wait_until(lambda: figure("processed") == f"{processed:,}", 60, what="the overview's processed figure")
    expected_dead = len(batch.poison) + 1 + len(exhausted)
    wait_until(lambda: figure("dead_lettered") == f"{expected_dead:,}", 60, what="the overview's dead letters")
    screenshot(browser, "console-overview.png", tmp_path)

    def listed() -> list:
        browser.get(f"{url}/dead-letters")  # reloaded until the console has read every dead letter
        return browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")

    wait_until(lambda: len(listed()) == expected_dead, 60, what="every dead letter listed")
    rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    keys = [row.find_element(By.CSS_SELECTOR, ".key").text for row in rows]
    assert HOSTILE_KEY in keys, "a hostile key shows as its text"
    assert browser.find_elements(By.CSS_SELECTOR, "#dead-letters img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - no script from a record ran
    screenshot(browser, "console-dead-letters.png", tmp_path)

    browser.find_element(By.NAME, "reason").send_keys("exhausted")
    browser.find_element(By.ID, "apply").click()
    wait_until(lambda: "reason=exhausted" in browser.current_url, 30, what="the filtered page")
    rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    assert len(rows) == len(exhausted)
    assert {row.find_element(By.CSS_SELECTOR, ".reason").text for row in rows} == {REASON_EXHAUSTED}
    filtered_url = browser.current_url

    rows[0].find_element(By.CSS_SELECTOR, "a.detail").click()
    wait_until(lambda: "/dead-letters/" in browser.current_url, 30, what="the detail page")
    header_names = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#headers tbody tr td:first-child")]
    assert DLQ_REASON in header_names and "productId" not in header_names
    assert "Item3" in browser.find_element(By.ID, "value").text

    browser.get(filtered_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    chosen = {(int(row.get_attribute("data-partition")), int(row.get_attribute("data-offset"))) for row in rows[:3]}
    for row in rows[:3]:
        row.find_element(By.CSS_SELECTOR, "input.choose").click()
    browser.find_element(By.ID, "preview-chosen").click()  # no token yet
    wait_until(lambda: figure("problem").startswith("Refused"), 60, what="the replay refused without the token")
    assert "token" in figure("problem") and replays() == []
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "preview-chosen").click()
    wait_until(lambda: "would be replayed" in figure("preview-text"), 60, what="the dry-run preview")
    assert figure("preview-text").startswith("3 dead letter(s) would be replayed")
    assert replays() == [], "a dry run sends nothing"

    browser.find_element(By.ID, "confirm").click()
    wait_until(lambda: figure("progress").startswith("Replayed"), 60, what="the replay to finish")
    assert figure("progress").startswith("Replayed 3 dead letter(s)")
    replayed = replays()
    assert sorted((source_of(r.headers)[1], source_of(r.headers)[2]) for r in replayed) == sorted(chosen)  # type: ignore[index]

    browser.get(url)
    wait_until(lambda: figure("processed") == f"{processed + 3:,}", 60,
               what="the replayed orders processed, seen on the overview without reloading")

    browser.get(filtered_url)
    for row in browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr"):
        if (int(row.get_attribute("data-partition")), int(row.get_attribute("data-offset"))) in chosen:
            assert row.find_element(By.CSS_SELECTOR, ".replayed").text == "yes"
            row.find_element(By.CSS_SELECTOR, "input.choose").click()
    browser.find_element(By.ID, "preview-chosen").click()
    wait_until(lambda: "would be replayed" in figure("preview-text"), 60, what="the second preview")
    assert figure("preview-text").startswith("0 dead letter(s) would be replayed; 3 replayed before")

    assert console.stop() == 0 and fixed.stop() == 0
    assert len(replays()) == 3
    runner.assert_healthy()

"""The reader's page in a real browser: Playwright driving Debian's Chromium (no downloaded browser).

Answers every item with the keyboard, reloads halfway and checks the answers survived, changes
one answer, downloads the answers and scores them; the scored accuracy must equal the one
computed by hand from the key and the answers given.

Needs ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it). Without it the
test is skipped, unless GENBENCH_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from turing_helpers import make_small_study

CHROMIUM = os.environ.get("GENBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing is None and not Path(CHROMIUM).is_file():
        missing = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if missing:
        if os.environ.get("GENBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def _study_items(page_html: str) -> list[dict]:
    start = page_html.index('<script type="application/json" id="study-data">') + len(
        '<script type="application/json" id="study-data">')
    end = page_html.index("</script>", start)
    return json.loads(page_html[start:end])["items"]


def _current_id(page, src_to_id: dict[str, str]) -> str:
    return src_to_id[page.get_attribute("#image", "src")]


def test_page_answer_reload_download_score(browser, tmp_path, capsys):
    key = make_small_study(tmp_path / "study", n=6, seed=3)
    html_path = tmp_path / "study" / "index.html"
    items = _study_items(html_path.read_text(encoding="utf-8"))
    src_to_id = {it["src"]: it["id"] for it in items}
    assert len(src_to_id) == 12  # every image distinct, so the src identifies the item

    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html_path.as_uri())

    assert page.is_visible("#start") and not page.is_visible("#task")
    page.fill("#reader-name", "Dr. Ada")
    page.press("#reader-name", "Enter")
    assert page.is_visible("#task")

    # A fixed plan of answers, independent of the truth (which the page does not know).
    given: dict[str, tuple[str, int]] = {}
    for step in range(12):
        if step == 6:
            # Halfway: reload. The page resumes for the same reader at the first open item.
            stored = page.evaluate("() => Object.keys(localStorage)")
            assert any(k.endswith(":reader:Dr. Ada") for k in stored)
            page.reload()
            assert page.is_visible("#task")
            assert page.inner_text("#progress-text").startswith("6 / 12")
            assert page.inner_text("#reader-label") == "reader: Dr. Ada"
            assert page.get_attribute("#progress", "value") == "6"
        item = _current_id(page, src_to_id)
        assert item not in given  # never shown an answered item while open ones remain
        answer = "synthetic" if step % 3 == 0 else "real"
        conf = 1 + step % 5
        page.keyboard.press(str(conf))
        page.keyboard.press("S" if answer == "synthetic" else "r")
        given[item] = (answer, conf)
        assert page.inner_text("#progress-text").startswith(f"{step + 1} / 12")
    assert page.is_visible("#done")

    # Review: go back to the last item and change its answer and confidence with the keyboard.
    page.click("#review")
    for _ in range(11):
        page.keyboard.press("ArrowRight")
    last = _current_id(page, src_to_id)
    assert last == items[-1]["id"]
    flipped = "real" if given[last][0] == "synthetic" else "synthetic"
    page.keyboard.press("5")
    page.keyboard.press("S" if flipped == "synthetic" else "R")
    given[last] = (flipped, 5)

    with page.expect_download() as dl:
        page.click("#download")
    answers_path = tmp_path / "answers.json"
    dl.value.save_as(answers_path)
    doc = json.loads(answers_path.read_text(encoding="utf-8"))
    assert doc["schema"] == "genbench.turing.answers/1"
    assert doc["study_id"] == key["study_id"] and doc["reader"] == "Dr. Ada"
    assert doc["n_answered"] == 12
    got = {a["id"]: (a["answer"], a["confidence"]) for a in doc["answers"]}
    assert got == given
    assert all(a["time_ms"] >= 0 for a in doc["answers"])
    assert dl.value.suggested_filename == f"answers-Dr._Ada-{key['study_id']}.json"

    # Nothing but the page itself was requested (images are embedded data: URIs).
    assert {u for u in requests if not u.startswith("data:")} == {html_path.as_uri()}
    assert not errors

    # Score: CLI and library agree with a hand count from the key.
    truth = {it["id"]: it["truth"] for it in key["items"]}
    correct = sum(given[i][0] == truth[i] for i in truth)
    tp = sum(given[i][0] == "synthetic" and truth[i] == "synthetic" for i in truth)
    tn = sum(given[i][0] == "real" and truth[i] == "real" for i in truth)
    from genbench.cli import main

    capsys.readouterr()
    rc = main(["turing", "score", str(tmp_path / "study" / "key.json"), str(answers_path),
               "--format", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    reader = report["studies"][0]["readers"][0]
    assert reader["accuracy"]["value"] == pytest.approx(correct / 12)
    assert reader["sensitivity"]["value"] == pytest.approx(tp / 6)
    assert reader["specificity"]["value"] == pytest.approx(tn / 6)
    assert reader["auc"] is not None  # every answer carried a confidence
    context.close()


def test_page_names_from_readers_list_and_switch(browser, tmp_path):
    make_small_study(tmp_path / "s", n=2, readers=["Ann", "Bob"])
    context = browser.new_context()
    page = context.new_page()
    page.goto((tmp_path / "s" / "index.html").as_uri())
    assert page.is_visible("#reader-select") and not page.is_visible("#reader-name")
    page.select_option("#reader-select", "Bob")
    page.click("#start-button")
    page.click("#answer-real")
    page.click("#answer-synthetic")
    assert page.inner_text("#progress-text").startswith("2 / 4")
    # Another reader on the same browser starts from zero; Bob's answers stay stored.
    page.click("#switch-reader")
    page.select_option("#reader-select", "Ann")
    page.click("#start-button")
    assert page.inner_text("#progress-text").startswith("0 / 4")
    page.click("#switch-reader")
    page.select_option("#reader-select", "Bob")
    page.click("#start-button")
    assert page.inner_text("#progress-text").startswith("2 / 4")
    context.close()

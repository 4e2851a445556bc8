"""The review app in a real browser: Debian's chromium driven through chromium-driver (Selenium).

`tunesmith review` runs as a real server on a loopback port; the test votes by clicking and by
keys, reloads, finds its progress, and checks the results page against the votes it made,
counted here from the stored layout (sqlite read directly) and Wilson's formula by hand.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3

import pytest
from review_runs import copy_run, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (apt-get install -y chromium "
    "chromium-driver; `make test` installs them when run as root on Debian)",
), pytest.mark.xdist_group("review-runs")]
Z = 1.959963984540054


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _wait_text(browser, element_id, text):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The page may be replaced between finding the element and reading it: look again.
    wait = WebDriverWait(browser, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    wait.until(lambda b: b.find_element(By.ID, element_id).text == text, f"#{element_id} never read {text!r}")


def _second_run(gen_run):
    """qa2: the same run with other answers, so three models meet (Bradley-Terry shows)."""
    other = copy_run(gen_run, gen_run.parent, "qa2")
    rows = [json.loads(x) for x in (other / "samples.jsonl").read_text().splitlines()]
    (other / "samples.jsonl").write_text("".join(
        json.dumps({**r, "finetuned": f"qa2 says {i}"}) + "\n" for i, r in enumerate(rows)))
    return other


def _layout(run_dir):
    with sqlite3.connect(run_dir / "review" / "review.sqlite") as db:
        return {pid: (a, b, bool(left)) for pid, a, b, left in
                db.execute("SELECT id, model_a, model_b, left_is_a FROM pairs")}


def test_vote_by_click_and_keys_reload_and_read_the_results(gen_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _second_run(gen_run)
    proc, url = start_server(gen_run, "--against", "baseline", "--against", "qa2", "--seed", "5")
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "name").send_keys("Selenium", Keys.ENTER)
        _wait_text(browser, "progress", "0 of 9 done")
        assert browser.find_element(By.ID, "reviewer").text == "Selenium"

        made = []  # (pair id, choice) in the order voted
        plan = [("click", "left"), ("key", "right"), ("key", "tie"), ("click", "both_bad"),
                ("key", "left"), ("click", "right"), ("key", "left")]
        for n, (how, choice) in enumerate(plan):
            pair_id = browser.find_element(By.ID, "pair-id").get_attribute("value")
            if n == 1:  # a key typed into the note is text, not a vote
                note = browser.find_element(By.ID, "note")
                note.send_keys("1 is wordy")
                assert browser.find_element(By.ID, "pair-id").get_attribute("value") == pair_id
            if how == "click":
                browser.find_element(By.ID, f"choice-{choice}").click()
            else:
                browser.find_element(By.TAG_NAME, "body").send_keys("1234"[("left", "right", "tie", "both_bad").index(choice)])
            made.append((pair_id, choice))
            # the next item (or the same page after the last) has loaded
            _wait_text(browser, "progress", f"{n + 1} of 9 done")
            if n == 3:
                browser.refresh()
                _wait_text(browser, "progress", "4 of 9 done")
                assert browser.find_element(By.ID, "reviewer").text == "Selenium"
        assert len({p for p, _ in made}) == len(made)  # never the same item twice

        # independent count: which model each click chose, from the stored layout
        layout = _layout(gen_run)
        tally = {opp: {"wins": 0, "losses": 0, "ties": 0, "both-bad": 0} for opp in ("baseline", "qa2")}
        left_wins = decisive = 0
        for pair_id, choice in made:
            a, b, left_is_a = layout[pair_id]
            if "qa" not in (a, b):
                continue  # baseline vs qa2: counts toward the ranking only
            opponent = b if a == "qa" else a
            if choice in ("tie", "both_bad"):
                tally[opponent]["ties" if choice == "tie" else "both-bad"] += 1
                continue
            chose_a = (choice == "left") == left_is_a
            tally[opponent]["wins" if chose_a == (a == "qa") else "losses"] += 1
        left_wins = sum(c == "left" for _, c in made)
        decisive = sum(c in ("left", "right") for _, c in made)

        browser.find_element(By.LINK_TEXT, "Results").click()
        _wait_text(browser, "n-votes", str(len(made)))
        for opponent, counts in tally.items():
            row = browser.find_element(By.CSS_SELECTOR, f'tr[data-opponent="{opponent}"]')
            shown = {k: int(row.find_element(By.CLASS_NAME, k).text) for k in counts}
            assert shown == counts, opponent
            k, n = counts["wins"], counts["wins"] + counts["losses"]
            rate = row.find_element(By.CLASS_NAME, "win-rate").text
            if n:
                p = k / n
                centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
                half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
                assert rate == f"{p:.3f}"
                assert row.find_element(By.CLASS_NAME, "wilson-low").text == f"{centre - half:.3f}"
                assert row.find_element(By.CLASS_NAME, "wilson-high").text == f"{centre + half:.3f}"
            else:
                assert rate == "–"
        bias = browser.find_element(By.ID, "position-bias")
        assert bias.find_element(By.CLASS_NAME, "left-wins").text == str(left_wins)
        assert bias.find_element(By.CLASS_NAME, "decisive").text == str(decisive)
        ranked = browser.find_elements(By.CSS_SELECTOR, "#ranking tbody th")
        assert sorted(r.text for r in ranked) == ["baseline", "qa", "qa2"]

        # the note went in with its vote
        with sqlite3.connect(gen_run / "review" / "review.sqlite") as db:
            notes = dict(db.execute("SELECT pair_id, note FROM votes"))
        assert notes[made[1][0]] == "1 is wordy"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

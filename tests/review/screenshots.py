"""Screenshots of every page of the review app, for docs/review.md (not a test).

    python tests/review/screenshots.py GENERATIVE_RUN CLASSIFICATION_RUN docs/img [FREE_TEXT_RUN]

Starts `tunesmith review` on each run (a real server), drives Debian's headless chromium with
Selenium through the pages (voting with keys, asking the playground, marking a wrong label)
and saves review-*.png, each quantised to a palette so it stays small.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from review_runs import start_server  # noqa: E402
from test_review_browser import CHROMIUM, DRIVER  # noqa: E402


def _save(driver, path: Path) -> None:
    from PIL import Image

    driver.save_screenshot(str(path))
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} kB")


def main(gen_run: str, cls_run: str, out: str, text_run: str | None = None) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out_dir = Path(out)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860",
                "--hide-scrollbars", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(10)
    procs = []
    try:
        proc, url = start_server(gen_run, "--against", "baseline")
        procs.append(proc)
        driver.get(url + "/review")
        _save(driver, out_dir / "review-name.png")
        driver.find_element(By.ID, "name").send_keys("Ann", Keys.ENTER)
        time.sleep(1)
        for key in "1213":
            driver.find_element(By.TAG_NAME, "body").send_keys(key)
            time.sleep(0.8)
        driver.find_element(By.ID, "note").send_keys("B reads the review right")
        _save(driver, out_dir / "review-pair.png")
        driver.get(url + "/results")
        _save(driver, out_dir / "review-results.png")
        driver.get(url + "/playground")
        driver.find_element(By.ID, "text").send_keys("A warm, funny film that never talks down to its audience.")
        driver.find_element(By.ID, "ask").click()
        driver.find_element(By.ID, "playground-answers")
        _save(driver, out_dir / "review-playground.png")

        proc, url = start_server(cls_run)
        procs.append(proc)
        driver.get(url + "/errors")  # the reviewer cookie of the first app holds on this host
        driver.find_element(By.CSS_SELECTOR, ".mark-form button").click()
        time.sleep(1)
        driver.execute_script("window.scrollTo(0, 0)")
        _save(driver, out_dir / "review-errors.png")

        if text_run:  # a pair of free-text answers
            proc, url = start_server(text_run, "--against", "baseline")
            procs.append(proc)
            driver.get(url + "/review")
            for _ in range(8):  # ties on identical answers until a pair differs
                left, right = (driver.find_element(By.ID, f"answer-{side}").text for side in ("left", "right"))
                if left != right:
                    break
                driver.find_element(By.TAG_NAME, "body").send_keys("3")
                time.sleep(0.8)
            _save(driver, out_dir / "review-pair-text.png")
    finally:
        driver.quit()
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:5])

"""Plays video NAME on the page at URL in headless Chromium and reports what a person saw.

    python browser_video.py URL NAME SCREENSHOT

Waits for NAME's row and its poster, clicks Play, and waits for the video to play past
PLAYED_S seconds. Prints one JSON object: the poster's natural size, how the player plays
(`hls` or `progressive`), the times the video reached, any media error, the rows of the
list (to see that the video's outputs are grouped), and whether H.264 in MP4 is playable
here at all. Saves a screenshot of the page.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

PLAYED_S = 1.5
TIMEOUT_S = 60

url, name, screenshot = sys.argv[1:4]

options = webdriver.ChromeOptions()
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--window-size=1100,1200"):
    options.add_argument(flag)
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=options)


def until(what, check, timeout=TIMEOUT_S):
    """check()'s first truthy value within timeout; fails the run naming what it waited for."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            got = check()
        except (NoSuchElementException, StaleElementReferenceException):
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def row():
    """NAME's row in the list (the page redraws it, so found afresh each time)."""
    for tr in driver.find_elements(By.CSS_SELECTOR, "#files tr"):
        links = tr.find_elements(By.CSS_SELECTOR, "td.name a")
        if links and links[0].text == name:
            return tr
    return None


try:
    driver.get(url)
    codecs = driver.execute_script(
        "return {mse: !!window.MediaSource && MediaSource.isTypeSupported("
        "'video/mp4; codecs=\"avc1.42E01E,mp4a.40.2\"'), "
        "video: document.createElement('video').canPlayType("
        "'video/mp4; codecs=\"avc1.42E01E, mp4a.40.2\"')}")
    until(f"the row of {name}", row)
    poster = until("its poster to load", lambda: driver.execute_script(
        "const img = arguments[0].querySelector('img.poster');"
        "return img && img.complete && img.naturalWidth > 0"
        " ? {width: img.naturalWidth, height: img.naturalHeight} : null;", row()))
    row().find_element(By.CSS_SELECTOR, "button.play").click()
    times = []

    def played():
        state = driver.execute_script(
            "const v = document.getElementById('video');"
            "return {t: v.currentTime, error: v.error && (v.error.code + ' ' + v.error.message),"
            " mode: document.getElementById('player').dataset.mode || null};")
        if not times or times[-1] != state["t"]:
            times.append(state["t"])
        if state["error"]:
            raise SystemExit(f"the video failed: {state}")
        return state if state["t"] > PLAYED_S else None

    state = until(f"the video to play past {PLAYED_S} s", played)
    player = driver.execute_script(
        "const v = document.getElementById('video');"
        "return {how: document.getElementById('player-how').textContent,"
        " width: v.videoWidth, height: v.videoHeight};")
    rows = [tr.text for tr in driver.find_elements(By.CSS_SELECTOR, "#files tr")]
    os.makedirs(os.path.dirname(screenshot) or ".", exist_ok=True)
    driver.save_screenshot(screenshot)
    print(json.dumps({"codecs": codecs, "poster": poster, "mode": state["mode"],
                      "player": player, "times": times, "rows": rows}))
finally:
    driver.quit()

"""Uploads FILE through the page at URL in headless Chromium and reports what a person saw.

    python browser_upload.py URL FILE SCREENSHOT

Prints one JSON object: the progress values seen while uploading, the final status text,
and whether the file then appears in the page's list. Saves a screenshot of the page.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

url, path, screenshot = sys.argv[1:4]
name = os.path.basename(path)

options = webdriver.ChromeOptions()
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--window-size=1100,900"):
    options.add_argument(flag)
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=options)
try:
    driver.get(url)
    driver.find_element(By.ID, "picker").send_keys(path)
    seen = []
    deadline = time.time() + 300
    status = ""
    while time.time() < deadline:
        rows = driver.find_elements(By.CSS_SELECTOR, ".upload")
        if rows:
            progress = rows[0].get_attribute("data-progress")
            if progress is not None and (not seen or seen[-1] != float(progress)):
                seen.append(float(progress))
            status = rows[0].find_element(By.CSS_SELECTOR, ".stats").text
            if "done" in rows[0].get_attribute("class") or "failed" in rows[0].get_attribute("class"):
                break
        time.sleep(0.02)
    rows = driver.find_elements(By.CSS_SELECTOR, ".upload")
    if rows:  # re-read: the row may have finished between the reads above
        status = rows[0].find_element(By.CSS_SELECTOR, ".stats").text
    listed = False
    for _ in range(100):
        links = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#files td.name a")]
        if name in links:
            listed = True
            break
        time.sleep(0.1)
    os.makedirs(os.path.dirname(screenshot) or ".", exist_ok=True)
    driver.save_screenshot(screenshot)
    print(json.dumps({"progress_seen": seen, "status": status, "listed": listed}))
finally:
    driver.quit()

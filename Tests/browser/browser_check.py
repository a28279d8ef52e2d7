#!/usr/bin/env python3
"""Drives headless Chromium (Selenium + chromedriver) against a running node.

    browser_check.py console --node http://127.0.0.1:PORT --screenshot .build/artifacts/console.png
    browser_check.py example --node http://127.0.0.1:PORT --page examples/browser/index.html \
        --screenshot .build/artifacts/browser-example.png

`console` opens the node's web console at `/`, checks the cluster view and
members are shown, starts a live tail of a wildcard pattern, publishes over
HTTP and waits for the message in the page, then waits for the group's row
with a non-zero rate. `example` serves examples/browser/ from a local web
server on another port (so the EventSource is cross-origin, as in real use),
opens it subscribed to a wildcard and waits for a published message.
Both fail on any error the page logged to the browser console, and save a
screenshot.

Exit status: 0 passed, 1 failed (the reason on stderr), 3 a tool is missing
(the line starting with SKIP names it), so the caller can skip instead.
"""
import argparse
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
import uuid


def skip(reason: str) -> None:
    print(f"SKIP: {reason}", flush=True)
    sys.exit(3)


def fail(reason: str) -> None:
    print(f"FAIL: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(1)


try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    skip("python module selenium is missing (pip install selenium)")


def http_json(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def publish(node: str, topic: str, data: str) -> str:
    ack = http_json("POST", f"{node}/v1/topics/{topic}", data.encode(), {"Content-Type": "text/plain"})
    if not ack.get("ok"):
        fail(f"publish to {topic} failed: {ack}")
    return ack["id"]


def start_browser(artifacts: str):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        skip("chromium not found (apt-get install chromium)")
    chromedriver = shutil.which("chromedriver")
    if not chromedriver:
        skip("chromedriver not found (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="piglix-chromium-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=os.path.join(artifacts, "chromedriver.log"))
    try:
        return webdriver.Chrome(service=service, options=options), profile
    except WebDriverException as error:
        fail(f"chromium did not start: {error.msg}")


def wait_for(driver, what: str, condition, timeout: float = 15):
    try:
        # The console re-renders its tables on every poll: an element found a
        # moment ago can be gone, so a stale reference just means "look again".
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition(d))
    except TimeoutException:
        fail(f"timed out after {timeout}s waiting until {what}")


def text_of(driver, selector: str) -> str:
    # One script call finds and reads the element, so a re-render in between
    # cannot leave a stale reference.
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : ''", selector)


def check_console(driver, node: str) -> None:
    cluster = http_json("GET", f"{node}/v1/cluster")
    driver.get(f"{node}/")
    wait_for(driver, f"the console shows node {cluster['node']}", lambda d: text_of(d, "#node") == cluster["node"])
    wait_for(driver, "the members table lists the view's members",
             lambda d: len(d.find_elements(By.CSS_SELECTOR, "#members tbody tr")) == len(cluster["members"]))
    for member in cluster["members"]:
        name = member if isinstance(member, str) else (member.get("id") or member.get("node"))
        if not driver.find_elements(By.CSS_SELECTOR, f'#members tr[data-member="{name}"]'):
            fail(f"member {name} is not in the members table")
    if text_of(driver, "#view") != str(cluster["view"]):
        fail(f"the console shows view {text_of(driver, '#view')}, the node {cluster['view']}")
    wait_for(driver, "readiness is shown", lambda d: text_of(d, "#ready") == "ready")

    pattern = "console.*"
    box = driver.find_element(By.ID, "tail-pattern")
    box.clear()
    box.send_keys(pattern)
    driver.find_element(By.ID, "tail-start").click()
    wait_for(driver, "the tail is live", lambda d: "live" in d.find_element(By.ID, "tail-state").get_attribute("class"))
    wait_for(driver, "the tail shows the group's view",
             lambda d: any(pattern in li.text for li in d.find_elements(By.CSS_SELECTOR, "#tail-log li.view")))

    payload = f"hello from chromium {uuid.uuid4().hex[:8]}"
    message_id = publish(node, "console.check", payload)
    wait_for(driver, f"the published message {message_id} appears in the tail",
             lambda d: any(payload in li.text for li in d.find_elements(By.CSS_SELECTOR, '#tail-log li.message[data-topic="console.check"]')))
    row = text_of(driver, f'#tail-log li.message[data-id="{message_id}"]')
    if "console.check" not in row:
        fail(f"the tail line for {message_id} lacks its topic: {row!r}")

    # Rates come from `delivered` deltas between polls: publish for a while
    # and wait for the group's row to show a non-zero rate.
    selector = f'#groups tr[data-group="{pattern}"]'
    wait_for(driver, f"the groups table has {pattern}", lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    deadline = time.monotonic() + 15
    count = 0
    while time.monotonic() < deadline:
        publish(node, "console.rate", f"tick {count}")
        count += 1
        rate = text_of(driver, f"{selector} td.rate")
        if rate.endswith("/s") and float(rate.rstrip("k/s")) > 0:
            break
        time.sleep(0.1)
    else:
        fail(f"the rate of {pattern} stayed at {text_of(driver, selector + ' td.rate')!r} while publishing")
    wait_for(driver, "both messages of the rate run are in the tail",
             lambda d: len(d.find_elements(By.CSS_SELECTOR, '#tail-log li.message[data-topic="console.rate"]')) >= 2)
    # The screenshot should show the rate and the messages: let one more poll land.
    time.sleep(1.2)
    print(f"console ok: node {cluster['node']}, view {cluster['view']}, message {message_id} shown, "
          f"{pattern} at {text_of(driver, selector + ' td.rate')}", flush=True)


def check_example(driver, node: str, page: str) -> None:
    directory, name = os.path.split(os.path.abspath(page))
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pattern = "browser.>"
        url = f"http://127.0.0.1:{server.server_port}/{name}?node={node}&topic={pattern}"
        driver.get(url)
        wait_for(driver, "the page's EventSource is live", lambda d: "live" in (d.find_element(By.ID, "state").get_attribute("class") or ""))
        payload = f"hello browser {uuid.uuid4().hex[:8]}"
        message_id = publish(node, "browser.example.temp", payload)
        wait_for(driver, f"message {message_id} appears on the page",
                 lambda d: any(payload in li.text and "browser.example.temp" in li.text
                               for li in d.find_elements(By.CSS_SELECTOR, "#messages li")))
        print(f"example ok: {name} from another origin shows message {message_id}", flush=True)
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def check_browser_log(driver) -> None:
    errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    if errors:
        fail("the page logged errors: " + "; ".join(entry.get("message", "") for entry in errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["console", "example"])
    parser.add_argument("--node", required=True, help="the node's URL, http://127.0.0.1:PORT")
    parser.add_argument("--page", default="examples/browser/index.html")
    parser.add_argument("--screenshot", required=True)
    args = parser.parse_args()
    artifacts = os.path.dirname(os.path.abspath(args.screenshot))
    os.makedirs(artifacts, exist_ok=True)

    driver, profile = start_browser(artifacts)
    try:
        try:
            if args.mode == "console":
                check_console(driver, args.node)
            else:
                check_example(driver, args.node, args.page)
            check_browser_log(driver)
        finally:
            driver.save_screenshot(args.screenshot)
            print(f"screenshot: {args.screenshot}", flush=True)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Drive weir's web console in the system's chromium (Playwright) for the observability tests.

The Rust test sets the server up (topics, a running pipeline fed by a producer, a halted
pipeline, a pipeline with dead letters) and runs this script, which walks the console as an
operator would and prints one JSON line of what it saw. Every page error and console error is
collected; the test asserts there are none.

    console.py --url http://127.0.0.1:PORT --topic T --value V --pipeline P \
        --halted H --halt-text TEXT --dlq-pipeline D [--screenshots DIR] [--token TOKEN]
    console.py --read-only --url URL --token TOKEN --pipeline P --plugin NAME
        (signs in with a read-only token and counts the action buttons it is shown)
    console.py --schemas SUBJECT --url URL
        (the subjects page and the subject's page: level, users, the last two versions' diff)
"""

import argparse
import json
import shutil
import sys
import time

from playwright.sync_api import sync_playwright

TIMEOUT_MS = 30_000


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH: run examples/setup.sh (it installs Debian's chromium)")


def number(page, selector):
    return int(page.locator(selector).inner_text().replace(",", "").split()[0])


def wait_for(what, check, timeout_s=TIMEOUT_MS / 1000):
    deadline = time.time() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def launch(p, seen):
    browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda m: m.type == "error" and seen["console_errors"].append(m.text))
    page.on("pageerror", lambda e: seen["console_errors"].append(str(e)))
    return browser, page


def read_only(args):
    """Sign in with a read-only token; the pipeline and plugin pages show no action buttons."""
    seen = {"console_errors": []}
    with sync_playwright() as p:
        browser, page = launch(p, seen)
        page.goto(args.url + "/")
        page.fill("#login input[name=token]", args.token)
        page.click("#login button")
        page.wait_for_selector("#rate-in")
        seen["who"] = page.locator("#who").inner_text()
        page.goto(f"{args.url}/#/pipelines/{args.pipeline}")
        page.wait_for_selector("#inputs")
        seen["pipeline_buttons"] = page.locator("button[data-act]").count()
        page.goto(f"{args.url}/#/plugins")
        page.wait_for_selector(f"text={args.plugin}")
        seen["plugin_buttons"] = page.locator("button[data-act]").count()
        browser.close()
    print(json.dumps(seen))


def schemas(args):
    """The subjects page lists the subject with its level and users; its page shows the diff
    between its last two versions."""
    seen = {"console_errors": []}
    with sync_playwright() as p:
        browser, page = launch(p, seen)
        page.goto(f"{args.url}/#/schemas")
        page.wait_for_selector(f"a[href='#/schemas/{args.schemas}']")
        seen["global_level"] = page.locator("#global-level").inner_text()
        seen["row"] = page.locator("table tbody tr", has_text=args.schemas).inner_text()
        page.click(f"a[href='#/schemas/{args.schemas}']")
        page.wait_for_selector("#diff")
        seen["level"] = page.locator("#subject-level").inner_text()
        seen["pipelines"] = page.locator("#subject-pipelines").inner_text()
        seen["added"] = page.locator("#diff .diff-add").all_inner_texts()
        seen["removed"] = page.locator("#diff .diff-del").all_inner_texts()
        if args.screenshots:
            page.screenshot(path=f"{args.screenshots}/schemas.png", full_page=True)
        browser.close()
    print(json.dumps(seen))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--read-only", action="store_true")
    ap.add_argument("--url", required=True)
    ap.add_argument("--pipeline")
    for flag in ("--topic", "--value", "--halted", "--halt-text", "--dlq-pipeline", "--plugin", "--schemas"):
        ap.add_argument(flag)
    ap.add_argument("--screenshots")
    ap.add_argument("--token")
    args = ap.parse_args()
    if args.read_only:
        return read_only(args)
    if args.schemas:
        return schemas(args)

    seen = {"console_errors": []}
    with sync_playwright() as p:
        browser, page = launch(p, seen)
        if args.token:
            page.goto(args.url + "/")
            page.fill("#login input[name=token]", args.token)
            page.click("#login button")
        else:
            page.goto(args.url + "/")
        page.wait_for_selector("#rate-in")
        # Two refreshes, so the rate has a previous sample.
        page.wait_for_timeout(2200)
        seen["overview_halted"] = number(page, "#halted-count .value")
        if args.screenshots:
            page.screenshot(path=f"{args.screenshots}/overview.png", full_page=True)

        # A topic's messages.
        page.goto(f"{args.url}/#/topics/{args.topic}")
        page.wait_for_selector("pre.value")
        seen["topic_values"] = page.locator("pre.value").all_inner_texts()
        seen["topic_has_value"] = any(args.value in v for v in seen["topic_values"])

        # A pipeline's counters rising while a producer runs.
        page.goto(f"{args.url}/#/pipelines/{args.pipeline}")
        page.wait_for_selector("#inputs")
        before = number(page, "#inputs")
        after = wait_for("the pipeline's inputs to rise", lambda: (n := number(page, "#inputs")) > before and n)
        seen["inputs"] = [before, after]
        seen["steps_rows"] = page.locator("table tbody tr").count()
        seen["partition_rows"] = page.locator("#partitions tbody tr").count()
        seen["policy"] = page.locator("#policy").inner_text()
        if args.screenshots:
            page.screenshot(path=f"{args.screenshots}/pipeline.png", full_page=True)

        # A halted pipeline's error.
        page.goto(f"{args.url}/#/pipelines/{args.halted}")
        page.wait_for_selector("#last-error")
        seen["halt_state"] = page.locator("#pipeline-state").inner_text()
        seen["halt_error"] = page.locator("#last-error").inner_text()
        seen["halt_error_shown"] = args.halt_text in seen["halt_error"]

        # Dead letters: pause the pipeline (the fix is on its way), replay, see them gone.
        page.goto(f"{args.url}/#/pipelines/{args.dlq_pipeline}")
        page.wait_for_selector("#dlq-pending")
        seen["dlq_before"] = number(page, "#dlq-pending")
        # A failure it handled (dead-lettered) is history, not its state.
        seen["handled_shown"] = page.locator("#last-handled").count()
        seen["handled_text"] = page.locator("#last-handled").inner_text() if seen["handled_shown"] else ""
        seen["handled_as_error"] = page.locator("#last-error").count()
        page.click("button[data-act=pause]")
        page.wait_for_selector("button[data-act=resume]")
        page.click("button[data-act=replay]")
        wait_for("the dead letters to be replayed", lambda: number(page, "#dlq-pending") == 0 or None)
        seen["dlq_after"] = number(page, "#dlq-pending")

        # Plugins: who uses each (pinned ones marked), and every version with its hash.
        page.goto(f"{args.url}/#/plugins")
        page.wait_for_selector("#versions")
        seen["plugin_rows"] = page.locator("table").first.locator("tbody tr").all_inner_texts()
        seen["version_rows"] = page.locator("#versions tbody tr").count()
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()

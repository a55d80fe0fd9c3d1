"""Check the built documentation site in a real browser (headless Chromium).

Serves the built site on localhost, opens the home page, one example page and one API
page, and fails unless: every image on them loaded, code blocks rendered (highlighted),
the API page lists its documented members, the search finds "custom_root", and the
browser logged no console errors.

    python .ci/check_site.py SITE_DIR [--chromium /usr/bin/chromium]
"""

import argparse
import functools
import http.server
import pathlib
import sys
import threading

from playwright.sync_api import sync_playwright


PAGES = {
    "home": "",
    "example": "examples/ridge_hyperparameter/",
    "api": "api/argmin/",
}
# What the API page must document (headings rendered by mkdocstrings).
API_MEMBERS = ("implicitx.ImplicitArgmin", "__call__", "solve", "implicitx.Solution")


def serve(site: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check_page(page, url: str, name: str, failures: list[str]) -> None:
    response = page.goto(url, wait_until="networkidle")
    if response is None or not response.ok:
        failures.append(f"{name}: {url} did not load")
        return
    images = page.eval_on_selector_all(
        "article img",
        "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])",
    )
    for src, width in images:
        if not width:
            failures.append(f"{name}: image {src} did not load")
    if name == "example" and not images:
        failures.append(f"{name}: no figure on the example page")
    blocks = page.locator("article pre code").count()
    highlighted = page.locator("article .highlight pre code span").count()
    if blocks == 0 or highlighted == 0:
        failures.append(f"{name}: code blocks missing or not highlighted")
    if name == "api":
        text = page.locator("article").inner_text()
        for member in API_MEMBERS:
            if member not in text:
                failures.append(f"{name}: documented member {member} not listed")


def check_search(page, url: str, failures: list[str]) -> None:
    page.goto(url, wait_until="networkidle")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    search = page.locator("input.md-search__input")
    search.focus()
    # Typed key by key, as a user would: the search listens to keyboard events, and
    # its index loads in a web worker.
    search.press_sequentially("custom_root", delay=50)
    results = page.locator(".md-search-result__item")
    try:
        results.first.wait_for(timeout=15_000)
    except Exception:
        failures.append('search: no result for "custom_root"')
        return
    if "custom_root" not in results.first.inner_text():
        failures.append('search: the first result does not mention "custom_root"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=pathlib.Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    server, base = serve(args.site)
    failures: list[str] = []
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium)
        page = browser.new_page()
        page.on(
            "console",
            lambda m: console.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: console.append(str(e)))
        for name, path in PAGES.items():
            check_page(page, base + path, name, failures)
        check_search(page, base, failures)
        browser.close()
    server.shutdown()
    failures += [f"console error: {message}" for message in console]
    for failure in failures:
        print(f"FAIL {failure}")
    if not failures:
        print(f"site OK: {', '.join(PAGES)} pages and search checked in Chromium")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

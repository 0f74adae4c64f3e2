"""Take docs/screenshot.png: the page in headless Chromium after a 7 with a crossbar is drawn
with the mouse. Needs Debian's chromium (`apt-get install chromium`).

Run: .venv/bin/python tools/make_screenshot.py [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from digit_recognizer.bench import free_port, start_server

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SEVEN = [[(0.25, 0.18), (0.75, 0.18), (0.45, 0.85)], [(0.35, 0.5), (0.65, 0.5)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    args = parser.parse_args()
    port = free_port()
    server, _ = start_server(port, workers=1)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": 760, "height": 560})
            page.goto(f"http://127.0.0.1:{port}/")
            pad = page.locator("#pad").bounding_box()
            for stroke in SEVEN:
                points = [(pad["x"] + x * pad["width"], pad["y"] + y * pad["height"])
                          for x, y in stroke]  # fmt: skip
                page.mouse.move(*points[0])
                page.mouse.down()
                for point in points[1:]:
                    page.mouse.move(*point, steps=12)
                page.mouse.up()
            page.wait_for_function("document.querySelector('#status').textContent.includes('ms')")
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

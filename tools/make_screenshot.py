"""Take docs/screenshot.png: the page in headless Chromium after a 7 with a crossbar is drawn
with the mouse; with --number, docs/screenshot-number.png: "2025" written in number mode, the
2 and the 0 touching. Needs Debian's chromium (`apt-get install chromium`).

Run: .venv/bin/python tools/make_screenshot.py [--number] [--out FILE]
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
TWO = [[(0.15, 0.25), (0.35, 0.05), (0.7, 0.07), (0.85, 0.3), (0.6, 0.6), (0.1, 0.97),
        (0.95, 0.95)]]  # fmt: skip
ZERO = [[(0.5, 0.02), (0.18, 0.2), (0.1, 0.55), (0.3, 0.95), (0.65, 0.97), (0.88, 0.65),
         (0.85, 0.25), (0.55, 0.02), (0.45, 0.06)]]  # fmt: skip
FIVE = [[(0.8, 0.04), (0.28, 0.04), (0.22, 0.45), (0.55, 0.38), (0.85, 0.6), (0.8, 0.88),
         (0.45, 1.0), (0.12, 0.86)]]  # fmt: skip
# "2025" across the wide pad (boxes: left, top, width, height); the 2's tail runs into the 0.
NUMBER = [(TWO, (0.08, 0.14, 0.16, 0.72)), (ZERO, (0.235, 0.14, 0.15, 0.72)),
          (TWO, (0.43, 0.14, 0.16, 0.72)), (FIVE, (0.62, 0.14, 0.15, 0.72))]  # fmt: skip


def draw(page, strokes, box=(0.0, 0.0, 1.0, 1.0)) -> None:
    """Strokes (points in a unit box) drawn with the mouse into `box` of the pad."""
    pad = page.locator("#pad").bounding_box()
    left, top, width, height = box
    for stroke in strokes:
        points = [(pad["x"] + (left + x * width) * pad["width"],
                   pad["y"] + (top + y * height) * pad["height"]) for x, y in stroke]  # fmt: skip
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", action="store_true", help="number mode, 2025")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path("docs/screenshot-number.png" if args.number else "docs/screenshot.png")
    port = free_port()
    server, _ = start_server(port, workers=1)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            size = {"width": 980, "height": 720} if args.number else {"width": 760, "height": 560}
            page = browser.new_page(viewport=size)
            page.goto(f"http://127.0.0.1:{port}/")
            if args.number:
                page.check("#mode-number")
                for strokes, box in NUMBER:
                    draw(page, strokes, box)
                # The answer to the whole drawing, not to a part of it on the way.
                page.wait_for_function("document.querySelectorAll('#digits li').length === 4")
            else:
                draw(page, SEVEN)
            page.wait_for_function("document.querySelector('#status').textContent.includes('ms')")
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

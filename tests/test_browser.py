"""End to end in a real headless Chromium: draw digits with the mouse and by touch, upload a
photo, and read the page's answer. Screenshots land in test-artifacts/ for a person to see."""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import ARTIFACTS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
HANDWRITING = Path(__file__).resolve().parents[1] / "data" / "handwriting"

if CHROMIUM is None and os.environ.get("DIGITS_REQUIRE_BROWSER"):
    pytest.fail("chromium is required here (DIGITS_REQUIRE_BROWSER is set)", pytrace=False)
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

# Pen paths in a unit box (x right, y down); each digit is a list of strokes.
ELLIPSE = [(0.5 + 0.38 * math.sin(a), 0.5 - 0.47 * math.cos(a))
           for a in (k / 24 * 2 * math.pi for k in range(25))]  # fmt: skip
DRAWINGS = {
    0: [ELLIPSE],
    1: [[(0.5, 0.03), (0.5, 0.97)]],
    4: [[(0.62, 0.97), (0.62, 0.03), (0.1, 0.66), (0.9, 0.66)]],
    7: [[(0.1, 0.06), (0.9, 0.06), (0.4, 0.97)]],
}
# Large and off-centre: each digit fills most of the pad's height, pushed to one side.
BOXES = {0: (0.05, 0.08, 0.5, 0.85), 1: (0.62, 0.1, 0.3, 0.85), 4: (0.4, 0.05, 0.55, 0.7),
         7: (0.08, 0.3, 0.55, 0.65)}  # fmt: skip


@pytest.fixture(scope="module")
def feedback_db(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('browser') / 'feedback.sqlite'}"


@pytest.fixture(scope="module")
def server(feedback_db):
    """`digits serve` on a free 127.0.0.1 port (the same start-up the benchmarks time)."""
    from digit_recognizer.bench import free_port, start_server

    port = free_port()
    process, _ready_seconds = start_server(port, workers=1, options=("--db", feedback_db))
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def pad_points(page, stroke, box):
    pad = page.locator("#pad").bounding_box()
    left, top, width, height = box
    return [
        (
            pad["x"] + (left + x * width) * pad["width"],
            pad["y"] + (top + y * height) * pad["height"],
        )
        for x, y in stroke
    ]


def draw_with_mouse(page, digit: int) -> None:
    for stroke in DRAWINGS[digit]:
        points = pad_points(page, stroke, BOXES[digit])
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=6)
        page.mouse.up()


def draw_number_with_mouse(page, layout) -> None:
    """Digits drawn side by side: `layout` lists (digit, box) with boxes in pad fractions."""
    for digit, box in layout:
        for stroke in DRAWINGS[digit]:
            points = pad_points(page, stroke, box)
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point, steps=6)
            page.mouse.up()


def draw_with_touch(page, digit: int) -> None:
    cdp = page.context.new_cdp_session(page)
    for stroke in DRAWINGS[digit]:
        points = pad_points(page, stroke, BOXES[digit])
        touch = lambda kind, x, y: cdp.send(  # noqa: E731
            "Input.dispatchTouchEvent",
            {"type": kind, "touchPoints": [] if kind == "touchEnd" else [{"x": x, "y": y}]},
        )
        touch("touchStart", *points[0])
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            for k in range(1, 7):
                touch("touchMove", x0 + (x1 - x0) * k / 6, y0 + (y1 - y0) * k / 6)
        touch("touchEnd", 0, 0)


def test_draw_digits_with_the_mouse(server, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.goto(server)
    expect(page.locator("#model")).to_contain_text("model.onnx")
    ARTIFACTS.mkdir(exist_ok=True)
    for digit in DRAWINGS:
        page.keyboard.press("Escape")
        expect(page.locator("#digit")).to_have_text("?")
        draw_with_mouse(page, digit)
        expect(page.locator("#digit")).to_have_text(str(digit), timeout=5000)
        expect(page.locator("#view")).to_have_attribute("src", re.compile(r"^data:image/png"))
        page.screenshot(path=ARTIFACTS / f"browser_mouse_{digit}.png")
    # Undo takes the last stroke away: the pad is empty again and the answer resets.
    page.keyboard.press("Control+z")
    expect(page.locator("#digit")).to_have_text("?")
    page.close()


def test_mark_an_answer_wrong_and_the_correction_is_stored(server, browser, feedback_db):
    """Draw a 7, say it is a 1 (a button), then a 4 marked right with the keyboard: both rows
    are in the database, each holding the 28x28 view and no more than the issue lists."""
    import sqlalchemy as sa
    from playwright.sync_api import expect

    from digit_recognizer.feedback import open_store

    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.goto(server)
    draw_with_mouse(page, 7)
    expect(page.locator("#digit")).to_have_text("7", timeout=5000)
    expect(page.locator("#verdict")).to_be_visible()
    page.click("#labels button[data-label='1']")
    expect(page.locator("#thanks")).to_have_text("Thanks: saved as 1.", timeout=5000)
    page.keyboard.press("Escape")
    expect(page.locator("#verdict")).to_be_hidden()
    draw_with_mouse(page, 4)
    expect(page.locator("#digit")).to_have_text("4", timeout=5000)
    page.keyboard.press("4")
    expect(page.locator("#thanks")).to_have_text("Thanks: saved as 4.", timeout=5000)
    page.screenshot(path=ARTIFACTS / "browser_feedback.png")
    client_id = page.evaluate("localStorage.getItem('digits-client-id')")
    page.close()

    store = open_store(feedback_db)
    rows = store.corrections(client_id=client_id)
    assert [(r.predicted, r.label) for r in rows] == [(7, 1), (4, 4)]
    assert all(r.view.shape == (28, 28) and r.view.max() > 200 for r in rows)  # the ink
    with store.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("feedback")}
    assert columns == {"id", "created", "client_id", "model_version", "predicted", "label",
                       "probabilities", "view"}  # fmt: skip


def test_write_a_number_with_touching_digits(server, browser):
    """Number mode: a wide pad, /api/read, a box and a probability per digit. The 1 and the 0
    touch (the 0's left edge crosses the 1's stroke)."""
    import io
    import json

    from PIL import Image
    from playwright.sync_api import expect

    from digit_recognizer.bench.server_load import number_canvas_png
    from digit_recognizer.web.app import decode_data_url

    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto(server)
    page.check("#mode-number")
    expect(page.locator("h1")).to_have_text("Write a number")
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] > 2.5 * pad["height"]  # the wide canvas
    layout = [(4, (0.04, 0.1, 0.17, 0.8)), (7, (0.27, 0.1, 0.17, 0.8)),
              (1, (0.5, 0.1, 0.08, 0.8)), (0, (0.535, 0.1, 0.19, 0.8))]  # fmt: skip
    with page.expect_request("**/api/read") as request:
        draw_number_with_mouse(page, layout)
    expect(page.locator("#digit")).to_have_text("4710", timeout=5000)
    # `digits bench` times /api/read on number_canvas_png(): the same kind of PNG as this one.
    sent = decode_data_url(json.loads(request.value.post_data)["image"])
    for png in (sent, number_canvas_png()):
        image = Image.open(io.BytesIO(png))
        assert (image.mode, image.size) == ("RGBA", (840, 280))
        assert zlib_speed_class(png) == zlib_speed_class(sent)
    expect(page.locator("#digits li")).to_have_count(4)
    expect(page.locator("#digits li").first).to_contain_text("4")
    page.screenshot(path=ARTIFACTS / "browser_number_4710.png")
    page.keyboard.press("Escape")
    expect(page.locator("#digits li")).to_have_count(0)
    page.check("#mode-digit")
    draw_with_mouse(page, 7)
    expect(page.locator("#digit")).to_have_text("7", timeout=5000)
    page.close()


def test_an_unsure_digit_of_a_number_names_its_runner_up(server, browser):
    """The page shows a digit /api/read is unsure of as "7 or 1?", in its entry under the
    drawing and marked apart. The answer is the server's own, its second digit made unsure."""
    from playwright.sync_api import expect

    def second_digit_unsure(route):
        answer = route.fetch().json()
        if len(answer.get("digits", [])) > 1:
            answer["digits"][1]["unsure"] = answer["unsure"] = True
        route.fulfill(json=answer)

    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto(server)
    page.check("#mode-number")
    page.route("**/api/read", second_digit_unsure)
    layout = [(4, (0.04, 0.1, 0.17, 0.8)), (7, (0.3, 0.1, 0.17, 0.8)),
              (0, (0.6, 0.1, 0.19, 0.8))]  # fmt: skip
    draw_number_with_mouse(page, layout)
    expect(page.locator("#digit")).to_have_text("470", timeout=5000)
    entries = page.locator("#digits li")
    expect(entries.nth(1)).to_contain_text(re.compile(r"^7 or \d\?"))
    expect(entries.nth(1)).to_have_class("unsure")
    expect(entries.first).not_to_contain_text("or")
    page.screenshot(path=ARTIFACTS / "browser_number_unsure.png")
    page.close()


def test_draw_by_touch_on_a_phone(server, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True, device_scale_factor=2)  # fmt: skip
    page = context.new_page()
    page.goto(server)
    assert page.locator("#pad").bounding_box()["width"] <= 390  # fits the phone
    draw_with_touch(page, 7)
    expect(page.locator("#digit")).to_have_text("7", timeout=5000)
    page.screenshot(path=ARTIFACTS / "browser_phone_7.png", full_page=True)
    context.close()


def test_upload_a_photo(server, browser):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server)
    photo = sorted(HANDWRITING.glob("3_*.jpg"))[0]
    page.set_input_files("#file", str(photo))
    expect(page.locator("#digit")).to_have_text("3", timeout=5000)
    page.set_input_files("#file", str(Path(__file__)))  # not an image
    expect(page.locator("#status")).to_contain_text("not a readable image")
    page.screenshot(path=ARTIFACTS / "browser_upload.png")
    page.close()


def test_a_12_megapixel_phone_photo_is_shrunk_in_the_page_and_read(server, browser, tmp_path):
    """A 4000x3000 JPEG (over the server's 5 MB limit as it comes from a phone, here about
    0.5-1 MB of mostly paper) is shrunk to a 2,000 px long side before it is sent."""
    from PIL import Image, ImageDraw, ImageFilter
    from playwright.sync_api import expect

    photo = Image.new("RGB", (4000, 3000), (214, 206, 190))
    ImageDraw.Draw(photo).line(
        [(1500, 800), (2500, 800), (1800, 2300)], fill=(30, 30, 40), width=120, joint="curve"
    )
    noisy = photo.filter(ImageFilter.GaussianBlur(3))
    path = tmp_path / "phone.jpg"
    noisy.save(path, "JPEG", quality=95)
    page = browser.new_page()
    page.goto(server)
    page.set_input_files("#file", str(path))
    expect(page.locator("#digit")).to_have_text(re.compile(r"^7"), timeout=10000)
    expect(page.locator("#status")).to_contain_text("photo shrunk to 2000\u00d71500 px")
    page.close()


def zlib_speed_class(png: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header: 0 fastest (levels 0-1), 1 fast (2-5), 2 default
    (6), 3 smallest (7-9). How hard the pixels were packed decides how long inflating takes."""
    at = png.index(b"IDAT") + 4
    return png[at + 1] >> 6


def test_bench_times_the_png_this_page_sends(server, browser):
    """`digits bench` times POST /api/predict on a canvas PNG made with Pillow: it must be
    what Chromium posts (280x280 RGBA at the same zlib speed), or the timing is of another
    request (a PNG packed at level 6 inflates 3-6x slower)."""
    import io
    import json

    from PIL import Image

    from digit_recognizer.bench import canvas_png
    from digit_recognizer.web.app import decode_data_url

    page = browser.new_page()
    page.goto(server)
    with page.expect_request("**/api/predict") as request:
        draw_with_mouse(page, 7)
    sent = decode_data_url(json.loads(request.value.post_data)["image"])  # as the server does
    page.close()
    ours = canvas_png()
    for png in (sent, ours):
        image = Image.open(io.BytesIO(png))
        assert (image.mode, image.size) == ("RGBA", (280, 280))
    assert zlib_speed_class(ours) == zlib_speed_class(sent)

"""Whole numbers: the generator, the reader on the committed test set, the CLI and the API."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from conftest import run_digits as digits
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from digit_recognizer import number_data as nd
from digit_recognizer import number_reader as nr
from digit_recognizer import segment
from digit_recognizer.errors import DigitsError
from digit_recognizer.image_folder import edit_distance, labelled_numbers
from digit_recognizer.predict import Recognizer
from digit_recognizer.web.app import create_app

NUMBERS = REPO / "data" / "numbers"
READER = Recognizer()
BOXES = json.loads((NUMBERS / "boxes.json").read_text())


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(max_bytes=1_000_000, max_pixels=4_000_000))


def files(subset: str, count: int) -> list[Path]:
    """Every k-th file of a subset, so that a few stand for all of it (both renderings)."""
    found = sorted(NUMBERS.glob(f"*_{subset}-*"))
    return found[:: max(1, len(found) // count)][:count]


def pool() -> nd.DigitPool:
    """Generated digits (no MNIST: the tests run without it), two of each label."""
    from digit_recognizer import synth

    return nd.pool_from_synth(synth.TRAIN_HANDS, 40, seed=1)


# --- The generator ------------------------------------------------------------------------


def test_generated_numbers_are_reproducible_and_boxed():
    first = nd.generate(pool(), 6, (1, 10), seed=3)
    again = nd.generate(pool(), 6, (1, 10), seed=3)
    for a, b in zip(first, again, strict=True):
        assert a.text == b.text and np.array_equal(a.image, b.image) and a.boxes == b.boxes
    for number in first:
        assert 1 <= len(number.text) <= 10 and len(number.boxes) == len(number.text)
        height, width = number.image.shape
        for left, top, right, bottom in number.boxes:
            assert 0 <= left < right <= width + 1 and 0 <= top < bottom <= height + 1
            region = number.image[top:bottom, left:right]
            assert region.min() < number.image.max() - 40  # the box holds ink
        lefts = [box[0] for box in number.boxes]
        assert lefts == sorted(lefts)  # left to right


def test_separated_digits_leave_a_gap_and_touching_ones_overlap():
    rng = np.random.default_rng(0)
    crops = pool().crops[:4]
    _, separated = nd.compose(crops, "separated", rng)
    _, touching = nd.compose(crops, "touching", rng)
    for points in (separated, touching):
        assert len(points) == 4
    gaps = [b[:, 0].min() - a[:, 0].max() for a, b in itertools.pairwise(separated)]
    overlaps = [b[:, 0].min() - a[:, 0].max() for a, b in itertools.pairwise(touching)]
    assert min(gaps) > 0 and max(overlaps) < 0


def test_a_pool_refuses_crops_without_ink_and_generate_unknown_spacings():
    with pytest.raises(ValueError, match="holds no ink"):
        nd.DigitPool([np.zeros((3, 3))], np.array([1]), "empty")
    with pytest.raises(ValueError, match="unknown spacing"):
        nd.generate(pool(), 1, (4, 4), spacings=("glued",))


def test_the_committed_test_set_is_whole_and_labelled():
    numbers = labelled_numbers(NUMBERS)
    subsets = {subset for _, _, subset in numbers}
    assert subsets == {"separated", "touching", "lengths", "heldout"}
    assert len(numbers) == len(BOXES) == 1200
    for path, text, _ in numbers[::50]:
        assert len(BOXES[path.name]) == len(text)


# --- The reader -----------------------------------------------------------------------------


def logits_for(labels: list[int]) -> np.ndarray:
    """Frames whose most likely class is the given one (0: blank, d + 1: digit d)."""
    logits = np.full((nr.FRAMES, 11), -5.0, np.float32)
    logits[np.arange(len(labels)), labels] = 5.0
    logits[len(labels) :, nr.BLANK] = 5.0
    return logits


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    decoded = nr.greedy_decode(logits_for([0, 3, 3, 0, 3, 0, 0, 1, 10, 10]))
    assert [d for d, _, _ in decoded] == [2, 2, 0, 9]  # 3 3 _ 3 -> "22"; then 0, 9
    assert [frame for _, frame, _ in decoded] == [1, 4, 7, 8]
    assert all(0.99 < p <= 1 for _, _, p in decoded)
    assert nr.greedy_decode(logits_for([])) == []


def test_the_line_is_the_ink_scaled_and_left_aligned():
    grey = np.full((120, 400), 230, np.float32)
    # A tall bar and a block, dark on light; edges off a common grid, which would make the
    # picture a pixel-replicated enlargement, smoothed first (`test_a_zoomed_in_small_number...`).
    grey[31:91, 101:111] = 20
    grey[31:91, 201:261] = 20
    line = nr.line_view(grey)
    assert line.view.shape == (nr.HEIGHT, nr.WIDTH) and line.view.max() > 200
    columns = np.flatnonzero(line.view.max(axis=0) > 100)
    rows = np.flatnonzero(line.view.max(axis=1) > 100)
    assert (
        columns[0] == nr.MARGIN and rows[0] == nr.MARGIN and rows[-1] == nr.HEIGHT - nr.MARGIN - 1
    )
    assert line.view[:, : nr.MARGIN].max() == 0 and (line.left, line.top) == (101, 31)


def test_a_large_photo_is_searched_at_a_lower_scale_and_read_at_a_useful_one():
    """A 1,600 px photo with the number in a corner: found on the image shrunk 8x, read from
    its own neighbourhood (not from the shrunk image, where its strokes are a pixel wide)."""
    path = files("separated", 1)[0]
    picture = Image.open(path).convert("L")
    number = np.asarray(picture.resize((picture.width * 2, picture.height * 2)), np.float32)
    photo = np.full((1200, 1600), float(np.median(number)), np.float32)
    photo[700 : 700 + number.shape[0], 800 : 800 + number.shape[1]] = number
    small = READER.read_number(number)
    large = READER.read_number(photo)
    assert large.number == small.number
    for a, b in zip(small.digits, large.digits, strict=True):
        moved = (b.box[0] - 800, b.box[1] - 700, b.box[2] - 800, b.box[3] - 700)
        assert nd.box_iou(a.box, moved) > 0.6, (a.box, moved)


def zoomed_in(path: Path, height: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The number shrunk to `height` px, then enlarged `factor` times two ways: by repeating
    pixels (a zoomed-in screenshot of a small scan) and smoothly (bilinear)."""
    picture = Image.open(path).convert("L")
    width = round(picture.width * height / picture.height)
    small = Image.fromarray(
        np.asarray(picture.resize((width, height), Image.Resampling.BOX), np.float32)
    )
    size = (width * factor, height * factor)
    blocky = small.resize(size, Image.Resampling.NEAREST)
    return np.asarray(blocky, np.float32), np.asarray(small.resize(size, Image.Resampling.BILINEAR))


def test_a_zoomed_in_small_number_is_read_from_its_own_pixels():
    """The blocks' staircase is not taken for the strokes' outline: the line and the row
    reader's digits are what the same small number enlarged smoothly gives."""
    blocky, smooth = zoomed_in(files("separated", 1)[0], 16, 6)
    assert np.array_equal(nr.line_view(blocky).view, nr.line_view(smooth).view)
    assert READER.read_number(blocky).number == READER.read_number(smooth).number
    blocky_row = segment.split_digits(Image.fromarray(blocky.astype(np.uint8)))
    smooth_row = segment.split_digits(Image.fromarray(np.rint(smooth).astype(np.uint8)))
    assert len(blocky_row) == len(smooth_row) == 4
    pairs = zip(blocky_row, smooth_row, strict=True)
    differences = [np.abs(a.image - b.image).mean() for a, b in pairs]
    assert np.mean(differences) < 3  # grey levels of 255; read as blocks, 17


def test_edit_distance():
    assert edit_distance("2025", "2025") == 0
    assert edit_distance("2025", "225") == 1 and edit_distance("", "12") == 2
    assert edit_distance("1234", "1243") == 2


@pytest.mark.parametrize(("subset", "least"), [("separated", 0.9), ("touching", 0.75)])
def test_reads_most_numbers_of_the_committed_set(recognizer, subset, least):
    """A sample of 40 (the whole set's figures are in docs/results.md): a reader that falls
    apart on touching digits, like read_row, fails this."""
    sample = files(subset, 40)
    right = sum(recognizer.read_number(path).number == path.name.split("_")[0] for path in sample)
    assert right / len(sample) >= least, right


def test_read_row_falls_apart_where_read_number_does_not(recognizer):
    sample = files("touching", 20)
    row = sum(
        "".join(str(p.digit) for p in recognizer.read_row(path)) == path.name.split("_")[0]
        for path in sample
    )
    number = sum(recognizer.read_number(path).number == path.name.split("_")[0] for path in sample)
    assert number >= row + 5, (number, row)


def test_boxes_cover_the_digits(recognizer):
    """Where the number is read right, nine boxes in ten overlap the true digit's by IoU 0.5."""
    overlaps = []
    for path in files("separated", 20):
        reading = recognizer.read_number(path)
        if reading.number == path.name.split("_")[0]:
            truth = BOXES[path.name]
            overlaps += [
                nd.box_iou(d.box, box) for d, box in zip(reading.digits, truth, strict=True)
            ]
    assert len(overlaps) >= 40 and np.mean(np.array(overlaps) >= 0.5) >= 0.9, overlaps


def test_confidences_and_the_json_shape(recognizer):
    reading = recognizer.read_number(files("separated", 1)[0])
    record = reading.as_dict()
    assert set(record) == {"number", "confidence", "unsure", "digits"}
    assert record["confidence"] == pytest.approx(
        np.prod([d["confidence"] for d in record["digits"]]), abs=1e-5
    )
    for digit in record["digits"]:
        assert set(digit) == {
            "digit", "confidence", "runner_up", "runner_up_probability", "unsure", "box"
        }  # fmt: skip
        assert 0 <= digit["runner_up_probability"] <= digit["confidence"] <= 1
        assert digit["runner_up"] != digit["digit"]
    assert record["unsure"] == any(d["unsure"] for d in record["digits"])


def test_a_digit_names_its_runner_up_and_is_unsure_within_the_margin():
    close = np.array([0, 0.5, 0, 0, 0, 0, 0, 0.45, 0, 0.05])
    digit = nr.number_digit(close, (1, 2, 3, 4), margin=0.1)
    assert (digit.digit, digit.runner_up, digit.unsure) == (1, 7, True)
    assert digit.runner_up_probability == pytest.approx(0.45)
    assert not nr.number_digit(close, (1, 2, 3, 4), margin=0.04).unsure
    assert not nr.number_digit(close, (1, 2, 3, 4)).unsure  # no margin: never unsure


def test_the_reader_is_calibrated_by_its_number_models_card(tmp_path):
    """The shipped card softens the three readings multiplied (a temperature above 1) and
    names a margin; the same model without its card reads the same number, more sure of
    each digit, and is never unsure."""
    shipped = nr.NumberReader()
    assert shipped.temperature > 1 and 0 < shipped.unsure_margin < 1
    bare = tmp_path / "number_model.onnx"
    bare.write_bytes(nr.DEFAULT_NUMBER_MODEL.read_bytes())
    uncalibrated = nr.NumberReader(bare)
    assert (uncalibrated.temperature, uncalibrated.unsure_margin) == (1.0, 0.0)
    grey = np.asarray(Image.open(files("touching", 1)[0]).convert("L"), np.float32)
    calibrated, raw = shipped.read(grey), uncalibrated.read(grey)
    assert calibrated.number == raw.number and not raw.unsure
    for soft, sharp in zip(calibrated.digits, raw.digits, strict=True):
        assert soft.confidence < sharp.confidence and soft.box == sharp.box


def test_calibration_softens_over_confident_readings_and_flags_the_closest_calls():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cal", REPO / "tools/calibrate_number_reader.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 4000)
    logits = rng.normal(0, 1, (4000, 10))
    logits[np.arange(4000), labels] += 2.5  # right about 80 % of the time ...
    sharp = nr.softmax(6 * logits)  # ... and far surer than that
    result = tool.calibration(sharp, labels, numbers=1000)
    assert result["temperature"] > 2
    assert result["validation_ece_calibrated"] < result["validation_ece"] / 2
    assert result["unsure"]["validation_flagged"] == pytest.approx(0.01, abs=0.003)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 120), st.integers(1, 300), st.integers(0, 2**32 - 1), st.booleans())
def test_random_images_give_a_number_or_a_clear_error(height, width, seed, strokes):
    """Noise, blank pages, thin slivers, random strokes: an answer or NoDigitError, nothing
    else (no IndexError from an empty candidate, no division by zero)."""
    rng = np.random.default_rng(seed)
    if strokes:
        grey = np.full((height, width), 255.0)
        for _ in range(rng.integers(1, 6)):
            top, left = rng.integers(0, height), rng.integers(0, width)
            grey[top : top + rng.integers(1, 30), left : left + rng.integers(1, 8)] = 0
    else:
        grey = rng.uniform(0, 255, (height, width))
    try:
        reading = READER.read_number(grey.astype(np.float32))
    except DigitsError:
        return
    assert reading.number.isdigit() and 0 <= reading.confidence <= 1


def number_trainer():
    """tools/train_number_reader.py, imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("trainer", REPO / "tools/train_number_reader.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    return trainer


def test_the_recurrent_branch_starts_at_zero_so_a_trained_model_reads_as_before():
    """tools/train_number_reader.py grafts its LSTM onto a model trained without one: the
    graft must not change a single answer until training moves it."""
    import keras

    trainer = number_trainer()
    keras.utils.set_random_seed(0)
    plain = trainer.convolutional_model()
    grafted = trainer.with_context(plain)
    assert "context" in [layer.name for layer in grafted.layers]
    assert grafted.count_params() > plain.count_params()
    assert trainer.with_context(grafted) is grafted
    lines = np.random.default_rng(0).uniform(0, 255, (3, nr.HEIGHT, nr.WIDTH, 1))
    before, after = (np.asarray(m(lines.astype("float32"))) for m in (plain, grafted))
    np.testing.assert_array_equal(before, after)


def test_the_shipped_number_model_reads_back_into_keras_to_train_further():
    """Training can go on from the shipped ONNX file (`--resume number_model.onnx`): read
    back, the network gives the logits ONNX Runtime gives, LSTM gates and folded BatchNorm
    included, and keeps its recurrent branch rather than getting a second one."""
    trainer = number_trainer()
    model = trainer.keras_from_onnx(nr.DEFAULT_NUMBER_MODEL)
    assert trainer._largest_difference(model, nr.DEFAULT_NUMBER_MODEL) < 1e-4
    assert trainer.with_context(model) is model
    assert not any(layer.trainable for layer in model.layers if "batch_norm" in layer.name)


def test_a_digit_window_is_the_line_around_its_frame():
    view = np.zeros((nr.HEIGHT, nr.WIDTH), np.float32)
    view[:, 50] = 255  # frame 12 spans columns 48-51
    windows = nr.digit_windows(view, [12, 0, nr.FRAMES - 1])
    assert windows.shape == (3, nr.HEIGHT, nr.WINDOW)
    assert np.flatnonzero(windows[0].sum(axis=0)).tolist() == [nr.WINDOW // 2]
    assert windows[1].sum() == windows[2].sum() == 0  # black past the line's ends


def test_two_sure_and_opposite_readings_still_give_a_distribution():
    sure = np.eye(10, dtype=np.float32)
    both = nr.multiplied(sure[[3, 5]], sure[[8, 5]])
    assert np.isfinite(both).all() and np.allclose(both.sum(axis=1), 1)
    assert both[1].argmax() == 5 and both[1].max() > 0.99


def test_the_context_model_has_a_say_in_every_digit(monkeypatch):
    """A context model sure that every digit is a 7 turns the number into 7s: its reading
    is multiplied into each digit's, touching or not."""
    reader = Recognizer()
    path = files("touching", 1)[0]
    length = len(reader.read_number(path).number)
    sevens = np.eye(10, dtype=np.float32)[7]
    monkeypatch.setattr(reader.number_reader, "in_context", lambda w: np.tile(sevens, (len(w), 1)))
    assert reader.read_number(path, digit_model=False).number == "7" * length


def test_context_windows_are_labelled_with_the_digits_the_number_model_placed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ctx", REPO / "tools/train_context_reader.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    numbers = nd.generate(pool(), 12, (2, 5), seed=3)
    reader = nr.NumberReader()
    x, y, left_out = trainer.windows(numbers, reader)
    placed = [nr.greedy_decode(reader.logits(nr.line_view(n.image).view[None])[0]) for n in numbers]
    kept = [n.text for n, found in zip(numbers, placed, strict=True) if len(found) == len(n.text)]
    assert y.tolist() == [int(c) for text in kept for c in text]
    assert left_out == len(numbers) - len(kept) < len(numbers)
    assert x.shape == (len(y), nr.HEIGHT, nr.WINDOW) and x.dtype == np.uint8
    assert trainer.build_model().output_shape == (None, 10)


# --- CLI and API ---------------------------------------------------------------------------


def test_predict_number_prints_the_number_and_json_matches_the_api(client, tmp_path):
    path = files("touching", 1)[0]
    plain = digits("predict", "--number", "--show", str(tmp_path), str(path))
    assert plain.returncode == 0, plain.stderr
    shown, number, confidence, *doubt = plain.stdout.strip().split("\t")
    assert shown == str(path) and number.isdigit() and 0 < float(confidence) <= 1
    assert len(doubt) <= 1 and all(d.startswith("unsure: digit ") for d in doubt)
    line = Image.open(tmp_path / f"{path.stem}_line_32x192.png")  # what the number model read
    assert line.size == (8 * 192, 8 * 32)
    record = json.loads(digits("predict", "--multi", "--json", str(path)).stdout)
    api = client.post("/api/read", content=path.read_bytes(), headers={"content-type": "image/png"})
    assert api.status_code == 200, api.text
    answer = api.json()
    assert answer.pop("latency_ms") > 0
    assert record.pop("path") == str(path) and record == answer and record["number"] == number


def test_evaluate_numbers_reports_each_subset(tmp_path):
    folder = tmp_path / "numbers"
    folder.mkdir()
    for path in files("separated", 3) + files("touching", 3):
        (folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "report.json"
    result = digits("evaluate-numbers", str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["subsets"]) == {"separated", "touching"}
    for tally in report["subsets"].values():
        assert tally["numbers"] == 3 and 0 <= tally["unsure_share"] <= 1
        assert tally["unsure_wrong"] <= min(tally["unsure"], 3 - tally["right"])
    assert digits("evaluate-numbers", str(tmp_path / "none")).returncode == 1


def test_unsure_digits_are_marked_in_the_terminal():
    from digit_recognizer.cli.reading import _format_number

    box = (0, 0, 1, 1)
    sure, unsure = nr.NumberDigit(2, 0.99, box, 7, 0.01), nr.NumberDigit(0, 0.5, box, 6, 0.4, True)
    view = np.zeros((nr.HEIGHT, nr.WIDTH), np.float32)
    line = _format_number(REPO / "a.png", nr.NumberReading([sure, unsure, sure], view))
    assert line.split("\t")[1:] == ["202", "0.4900", "unsure: digit 2 is 0 or 6?"]
    assert "unsure" not in _format_number(REPO / "a.png", nr.NumberReading([sure], view))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_api_read_refuses_a_blank_page_and_nested_json(client):
    """Every other error status of /api/read is tested with /api/predict's in test_web.py."""
    blank = client.post("/api/read", content=png(Image.new("L", (300, 100), 255)),
                        headers={"content-type": "image/png"})  # fmt: skip
    assert blank.status_code == 422 and "no digit found" in blank.json()["error"]
    nested = client.post("/api/read", content=b"[" * 1000 + b"]" * 1000,
                         headers={"content-type": "application/json"})  # fmt: skip
    assert nested.status_code == 400 and "nested" in nested.json()["error"]


def test_single_digits_read_as_before(recognizer):
    """/api/predict and `digits predict` do not go through the number reader."""
    path = sorted((REPO / "data" / "handwriting").glob("7_*.png"))[0]
    assert recognizer.read(path).digit == 7
    assert recognizer.read_number(path).number == "7"

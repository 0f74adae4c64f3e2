"""Scoring a reading model (ONNX, through preprocessing) on a folder of labelled images:
accuracy, per-digit recall, per-source accuracy, a confusion matrix and its picture.

A file's label is its name's first character (`7_kristi_03.jpg`) or its folder's name
(`7/anything.png`); the name's second field, if any, is its source (font, writer, style).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digit_recognizer.errors import DigitsError

NO_DIGIT = 10  # the confusion matrix's last column: preprocessing found no digit


def label_from_name(path: Path) -> int | None:
    """`7_kristi_03.jpg` or `7/anything.png` is a 7; None if neither names a digit."""
    for candidate in (path.name[:1], path.parent.name):
        if len(candidate) == 1 and candidate.isdigit():
            return int(candidate)
    return None


def labelled_images(folder: Path) -> list[tuple[Path, int]]:
    """Every image below `folder` whose name gives its label, in name order."""
    from digit_recognizer.images import IMAGE_SUFFIXES

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    labelled = [(p, label_from_name(p)) for p in files]
    found = [(p, y) for p, y in labelled if y is not None]
    if not found:
        raise DigitsError(f"{folder}: no labelled images (name them like 7_anything.png)")
    return found


def _source(path: Path) -> str:
    return path.stem.split("_")[1] if path.stem.count("_") >= 2 else "all"


def evaluate_images(folder: Path, model: str | Path | None = None, preprocessing: bool = True):
    """Accuracy of an ONNX model on a folder of labelled images.

    Returns a dict: accuracy, images, correct, no_digit (images where preprocessing found no
    digit; they count as wrong), per-digit recall, per-source accuracy, the confusion matrix
    (rows: true digit; columns: predicted digit, then "no digit"), how many answers, right
    and wrong, the model called unsure, and the mistakes.
    """
    from digit_recognizer.predict import Recognizer

    labelled = labelled_images(folder)
    recognizer = Recognizer(model)
    predicted, unsure = [], []
    for path, _ in labelled:
        try:
            prediction = recognizer.read(path, preprocessing=preprocessing)
            predicted.append(prediction.digit)
            unsure.append(prediction.unsure)
        except DigitsError:
            predicted.append(NO_DIGIT)
            unsure.append(False)
    labels = np.array([label for _, label in labelled])
    predicted, unsure = np.array(predicted), np.array(unsure, bool)
    hits = predicted == labels
    matrix = np.zeros((10, 11), int)
    np.add.at(matrix, (labels, predicted), 1)
    sources: dict[str, list[bool]] = {}
    for (path, _), hit in zip(labelled, hits, strict=True):
        sources.setdefault(_source(path), []).append(bool(hit))
    return {
        "model": str(recognizer.model_path),
        "folder": str(folder),
        "preprocessing": preprocessing,
        "images": len(labelled),
        "correct": int(hits.sum()),
        "accuracy": float(hits.mean()),
        "no_digit": int((predicted == NO_DIGIT).sum()),
        "recall": {
            str(d): float(hits[labels == d].mean()) for d in range(10) if (labels == d).any()
        },
        "per_source": {k: float(np.mean(v)) for k, v in sorted(sources.items())},
        "confusion_matrix": matrix.tolist(),
        "unsure": {"right": int((unsure & hits).sum()), "wrong": int((unsure & ~hits).sum())},
        "mistakes": [
            {"file": str(path), "label": int(label), "predicted": int(guess), "unsure": bool(u)}
            for (path, label), guess, u, hit in zip(labelled, predicted, unsure, hits, strict=True)
            if not hit
        ],
    }


def confusion_picture(report: dict, path: Path) -> Path:
    """The report's confusion matrix as a PNG (columns 0-9, then "none": no digit found)."""
    from digit_recognizer import plots

    matrix = np.array(report["confusion_matrix"])
    names = tuple(str(d) for d in range(10))
    title = f"{Path(report['folder']).name}: {report['accuracy']:.2%} of {report['images']}"
    return plots.confusion_matrix(matrix, names, path, columns=(*names, "none"), title=title)


def _answer(digit: int) -> str:
    return "none" if digit == NO_DIGIT else str(digit)


def disagreement_picture(report: dict, other: dict, path: Path, most: int = 24) -> Path:
    """The images only one of two reports' models reads right (at most `most` of each), as
    a PNG: black, read right by the first model only; red, by the second only. Each title
    is 'label: first's answer / second's answer'."""
    from PIL import Image

    from digit_recognizer import plots

    answers = [{m["file"]: m["predicted"] for m in r["mistakes"]} for r in (report, other)]
    labels = {m["file"]: m["label"] for r in (report, other) for m in r["mistakes"]}
    only_first = sorted(answers[1].keys() - answers[0].keys())
    only_second = sorted(answers[0].keys() - answers[1].keys())
    files = only_first[:most] + only_second[:most]
    images, titles = [], []
    for file in files:
        with Image.open(file) as picture:
            picture = picture.convert("L")
            picture.thumbnail((64, 64))
            images.append(np.asarray(picture))
        first, second = (_answer(a.get(file, labels[file])) for a in answers)
        titles.append(f"{labels[file]}: {first} / {second}")
    colors = ["black"] * len(only_first[:most]) + ["crimson"] * len(only_second[:most])
    first, second = Path(report["model"]).name, Path(other["model"]).name
    title = (
        f"Read right by one model only: {len(only_first)} by {first} (black), "
        f"{len(only_second)} by {second} (red)\n"
        f"each: label: {first}'s answer / {second}'s"
    )
    return plots.image_grid(images, titles, colors, path, title)


# --- Numbers ---------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: digits inserted, dropped or changed to turn a into b."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def labelled_numbers(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, number, subset) of every image named like `0721_touching-photo_0042.jpg`."""
    from digit_recognizer.images import IMAGE_SUFFIXES

    found = []
    for path in sorted(Path(folder).rglob("*")):
        text, _, rest = path.stem.partition("_")
        if path.suffix.lower() in IMAGE_SUFFIXES and text.isdigit():
            found.append((path, text, rest.split("_")[0].split("-")[0] or "all"))
    if not found:
        raise DigitsError(f"{folder}: no labelled numbers (name them like 2025_anything.png)")
    return found


NUMBER_READERS = ("number", "sequence", "row")


def score_numbers(folder: Path, read, load=lambda path: path) -> dict:
    """Whole-number and per-digit accuracy of `read(load(path))` on a folder of labelled
    numbers, per subset (the name's second field up to its first dash), with the median time
    of `read` (what `load` does is not timed). `read` gives the number ("2025") or a reading
    with `.number` and `.unsure`; then how many numbers, and how many misread ones, it calls
    unsure is counted too. A reading error counts as ""."""
    import time

    subsets: dict[str, dict] = {}
    seconds, mistakes = [], []
    for path, truth, subset in labelled_numbers(folder):
        source = load(path)
        start = time.perf_counter()
        try:
            result = read(source)
        except DigitsError:
            result = ""
        seconds.append(time.perf_counter() - start)
        text = result if isinstance(result, str) else result.number
        unsure = False if isinstance(result, str) else result.unsure
        tally = subsets.setdefault(
            subset, {"numbers": 0, "right": 0, "digits": 0, "errors": 0, "unsure": 0,
                     "unsure_wrong": 0}
        )  # fmt: skip
        tally["numbers"] += 1
        tally["right"] += text == truth
        tally["digits"] += len(truth)
        tally["errors"] += min(edit_distance(text, truth), len(truth))
        tally["unsure"] += unsure
        tally["unsure_wrong"] += unsure and text != truth
        if text != truth:
            mistakes.append({"file": str(path), "number": truth, "read": text, "unsure": unsure})
    for tally in subsets.values():
        tally["accuracy"] = tally["right"] / tally["numbers"]
        tally["digit_accuracy"] = 1 - tally["errors"] / tally["digits"]
        tally["unsure_share"] = tally["unsure"] / tally["numbers"]
        wrong = tally["numbers"] - tally["right"]
        tally["wrong_called_unsure"] = tally["unsure_wrong"] / wrong if wrong else None
    return {
        "folder": str(folder),
        "subsets": dict(sorted(subsets.items())),
        "median_ms": 1000 * float(np.median(seconds)),
        "mistakes": mistakes,
    }


def evaluate_numbers(folder: Path, model: str | Path | None = None, reader: str = "number"):
    """`score_numbers` for one of NUMBER_READERS: "number" (Recognizer.read_number),
    "sequence" (without the digit model), "row" (read_row: one connected blob per digit);
    the image's decoding is timed with it."""
    from digit_recognizer.predict import Recognizer

    recognizer = Recognizer(model)
    if reader == "row":
        read = lambda path: "".join(str(p.digit) for p in recognizer.read_row(path))  # noqa: E731
    else:
        helped = reader == "number"
        read = lambda path: recognizer.read_number(path, digit_model=helped)  # noqa: E731
    report = score_numbers(folder, read)
    return {"model": str(recognizer.model_path), "reader": reader, **report}

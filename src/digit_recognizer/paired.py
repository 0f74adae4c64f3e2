"""Whether two readers really differ on one labelled set, or only by chance.

Two models scored on the same images disagree on few of them; only those images tell them
apart. McNemar's exact test asks how likely a split of those images at least as uneven would
be if either model were as likely to win each one: a two-sided binomial tail at p = 1/2.
A difference of 2 images in 660 with 4 and 2 read by only one model (p = 0.69) is chance;
30 against 8 (p = 0.0005) is not.

paired_comparison(report_a, report_b) takes two `image_folder.evaluate_images` reports.
"""

from __future__ import annotations

from math import comb

import numpy as np

from digit_recognizer.errors import DigitsError


def mcnemar_p_value(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the chance, if each of the `only_first +
    only_second` disagreements were a fair coin, of a split at least this uneven."""
    if only_first < 0 or only_second < 0:
        raise ValueError("counts of images cannot be negative")
    n = only_first + only_second
    tail = sum(comb(n, k) for k in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**n)


def only_right(first: np.ndarray, second: np.ndarray) -> tuple[int, int, float]:
    """Per image, whether each of two models read it right (boolean arrays over the same
    images) -> the images only the first reads right, only the second, McNemar's p."""
    only_first, only_second = int(np.sum(first & ~second)), int(np.sum(second & ~first))
    return only_first, only_second, mcnemar_p_value(only_first, only_second)


def _mistakes(report: dict) -> dict[str, int]:
    """{file: label} of the images the report's model read wrong (a report names no other
    image, and only those one of two models misses can tell the two apart)."""
    return {mistake["file"]: mistake["label"] for mistake in report["mistakes"]}


def _split(missed_a: dict[str, int], missed_b: dict[str, int], digit=None) -> dict:
    """Images only A reads right and only B reads right (of `digit`, or of all)."""

    def count(only: set[str], labels: dict[str, int]) -> int:
        return sum(1 for f in only if digit is None or labels[f] == digit)

    only_a = count(missed_b.keys() - missed_a.keys(), missed_b)
    only_b = count(missed_a.keys() - missed_b.keys(), missed_a)
    return {"only_a": only_a, "only_b": only_b, "p_value": mcnemar_p_value(only_a, only_b)}


def paired_comparison(report_a: dict, report_b: dict) -> dict:
    """Two `evaluate_images` reports of one folder, read side by side: each model's correct
    count, the images only one of them reads right and McNemar's p-value, overall and per
    digit. Refuses reports of different folders or image counts."""
    if report_a["folder"] != report_b["folder"] or report_a["images"] != report_b["images"]:
        raise DigitsError("the two reports must score the same folder of images")
    missed_a, missed_b = _mistakes(report_a), _mistakes(report_b)
    per_digit = {digit: _split(missed_a, missed_b, int(digit)) for digit in report_a["recall"]}
    return {
        "folder": report_a["folder"],
        "images": report_a["images"],
        "models": [report_a["model"], report_b["model"]],
        "correct": [report_a["correct"], report_b["correct"]],
        **_split(missed_a, missed_b),
        "per_digit": per_digit,
    }

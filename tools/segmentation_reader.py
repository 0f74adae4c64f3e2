"""The segmentation-based number reader the shipped one (number_reader.py, no segmentation)
was compared with; tools/compare_segmentation_reader.py fits and scores it.

Connected components find the digits only when gaps separate them. Here the line is first
straightened (the slant that makes its columns emptiest between digits is taken off), then each
blob of ink (components whose columns overlap) gets several cut hypotheses: its components'
edges and the columns where little ink crosses. Every run of columns between two cuts that could
hold one digit is a candidate; the digit model reads all candidates in one batch. A small
network (one hidden layer) fitted on numbers made of MNIST's training digits says how likely each
candidate is a whole digit (not half of one, not two) from its shape, the ink its cuts cross
and the digit model's answer; dynamic programming picks the cuts whose candidates are most
likely whole digits read right.

A candidate owns the one-digit-sized components lying mostly inside its columns whole (a digit
that only overlaps its neighbour keeps its shape) and cuts across the others (digits that
touch). Imports NumPy and Pillow only; the digit model is any `views -> probabilities`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digit_recognizer import morphology
from digit_recognizer.errors import NoDigitError
from digit_recognizer.greystats import median
from digit_recognizer.number_reader import NumberReading, number_digit
from digit_recognizer.preprocess import digit_from_ink, halve, ink_map, ink_mask, stroke_width

WEIGHTS = Path("runs/segmentation/weights.json")  # written by compare_segmentation_reader.py
SHEARS = np.round(np.arange(-0.2, 0.61, 0.1), 2)  # slants tried: x moves by shear * height


@dataclass(frozen=True)
class ReaderConfig:
    """How candidates are made; `weights` scores them (fitted by tools/fit_number_reader.py)."""

    split_width: float = 0.6  # a blob narrower than this many digit heights is one digit
    min_width: float = 0.1  # a candidate's width, in digit heights
    max_width: float = 1.4
    cut_step: float = 0.15  # a cut is tried at the emptiest column of every such stretch
    whole: float = 0.8  # a one-digit component this much inside a candidate is taken whole
    work_height: int = 40  # px: images whose shorter side is 2.5x this are read halved
    weights: dict | None = None  # the candidate model; None: the shipped one


@dataclass
class Blob:
    left: int
    right: int  # column after the last
    top: int
    bottom: int
    components: list[int]  # labels of the components in it


@dataclass(frozen=True)
class Line:
    """A number's ink, straightened, cut into components and blobs."""

    ink: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    boxes: list[list[int]]  # per component (label k at index k - 1)
    blobs: list[Blob]
    height: float  # a digit's height, px
    stroke: float  # stroke width, px
    shifts: np.ndarray  # per row: columns the row was moved right to straighten it
    scale: int  # the image was halved this many times over (1, 2, 4...)


@dataclass(frozen=True)
class Candidate:
    """A run of a blob's columns [left, right) that may hold one digit; its mask covers the
    blob's region (`Region`), not the whole line."""

    blob: int
    left: int
    right: int
    mask: np.ndarray


@dataclass(frozen=True)
class Region:
    """A blob's box in the line, with a margin for the soft edges of its strokes."""

    top: int
    left: int
    labels: np.ndarray
    ink: np.ndarray
    column_ink: np.ndarray  # mask pixels per column of the region


def shift_rows(image: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each row moved right by its shift (whole columns; the image widens to hold them)."""
    height, width = image.shape
    out = np.zeros((height, width + int(shifts.max())), image.dtype)
    out[np.arange(height)[:, None], np.arange(width)[None, :] + shifts[:, None]] = image
    return out


def _row_shifts(height: int, shear: float) -> np.ndarray:
    """Shifts that take a slant of `shear` off: the top row moves most (left for a right
    lean), all made non-negative."""
    shifts = np.round(-shear * (height - 1 - np.arange(height))).astype(int)
    return shifts - shifts.min()


def straighten(ink: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ink and mask with the line's slant taken off: the shear whose column projection is
    sharpest (sum of squared column counts) wins. Returns ink, mask, row shifts."""
    rows = np.flatnonzero(mask.any(axis=1))
    band = mask[rows[0] : rows[-1] + 1]
    best, best_score = np.zeros(mask.shape[0], int), -1.0
    for shear in SHEARS:
        columns = shift_rows(band, _row_shifts(band.shape[0], shear)).sum(axis=0)
        score = float(np.square(columns, dtype=np.float64).sum())
        if score > best_score:
            best_score = score
            best = _row_shifts(mask.shape[0], shear)
    return shift_rows(ink, best), shift_rows(mask, best), best


def _blobs(boxes: list[list[int]]) -> list[Blob]:
    """Components grouped where their columns overlap (a broken 5, or two overlapping digits
    that do not touch: the cuts sort those out), left to right."""
    blobs: list[Blob] = []
    for k in sorted(range(len(boxes)), key=lambda k: boxes[k][0]):
        left, top, right, bottom = boxes[k]
        if blobs and left < blobs[-1].right:
            blob = blobs[-1]
            blob.right, blob.top = max(blob.right, right), min(blob.top, top)
            blob.bottom = max(blob.bottom, bottom)
            blob.components.append(k + 1)
        else:
            blobs.append(Blob(left, right, top, bottom, [k + 1]))
    return blobs


def find_line(grey: np.ndarray, work_height: int = 40) -> Line:
    """Grey image -> the number's straightened ink, its components and blobs."""
    scale = 1
    while min(grey.shape) >= 2.5 * work_height:
        grey, scale = halve(grey), 2 * scale  # the model sees 20 px: detail costs only time
    ink = ink_map(np.asarray(grey, np.float32))
    ink, mask, shifts = straighten(ink, ink_mask(ink))
    labels, count = morphology.label(mask)
    boxes = morphology.bounding_boxes(labels, count)
    blobs = _blobs(boxes)
    height = float(median([blob.bottom - blob.top for blob in blobs]))
    return Line(
        ink, mask, labels, boxes, blobs, height, max(stroke_width(mask), 1.0), shifts, scale
    )


def region(line: Line, blob: Blob, margin: int = 3) -> Region:
    top, left = max(blob.top - margin, 0), max(blob.left - margin, 0)
    bottom, right = blob.bottom + margin, blob.right + margin
    labels = line.labels[top:bottom, left:right]
    inside = np.isin(labels, blob.components)
    return Region(top, left, np.where(inside, labels, 0), line.ink[top:bottom, left:right],
                  inside.sum(axis=0))  # fmt: skip


def _cuts(line: Line, blob: Blob, area: Region, cfg: ReaderConfig) -> list[int]:
    """Columns (of the region) where a blob may be cut: its ends, its components' edges,
    and the emptiest column of every stretch of `cut_step` digit heights. A narrow blob is
    one digit."""
    first, last = blob.left - area.left, blob.right - area.left
    if last - first < cfg.split_width * line.height:
        return [first, last]
    cuts = {first, last}
    cuts |= {line.boxes[k - 1][i] - area.left for k in blob.components for i in (0, 2)}
    span = max(2, round(cfg.cut_step * line.height))
    for start in range(first + 1, last, span):
        stretch = area.column_ink[start : min(start + span, last)]
        cuts.add(start + int(np.argmin(stretch)))
    return sorted(cuts)


def _candidate_mask(
    line: Line, area: Region, columns: dict, blob: Blob, a: int, b: int, cfg
) -> np.ndarray:
    """The ink that the columns [a, b) of a blob hold. A component the size of one digit is
    taken whole when it lies mostly inside, left out when mostly outside (a neighbour that
    only overlaps), cut at the columns otherwise; a wider one (touching digits) is cut."""
    keep = np.zeros(len(line.boxes) + 1, dtype=bool)
    cut = np.zeros_like(keep)
    for k in blob.components:
        inside = columns[k][a:b].sum() / columns[k].sum()
        box = line.boxes[k - 1]
        one_digit = box[2] - box[0] < cfg.split_width * line.height
        if inside >= cfg.whole and one_digit:
            keep[k] = True
        elif inside > 0 and (inside > 1 - cfg.whole or not one_digit):
            cut[k] = True
    mask = keep[area.labels]
    mask[:, a:b] |= cut[area.labels[:, a:b]]
    return mask


def candidates(
    line: Line, cfg: ReaderConfig
) -> tuple[list[Candidate], list[list[int]], list[Region]]:
    """Every candidate digit of every blob, each blob's cuts and region."""
    found, all_cuts, areas = [], [], []
    for index, blob in enumerate(line.blobs):
        area = region(line, blob)
        columns = {k: (area.labels == k).sum(axis=0) for k in blob.components}
        cuts = _cuts(line, blob, area, cfg)
        all_cuts.append(cuts)
        areas.append(area)
        for i, a in enumerate(cuts):
            for b in cuts[i + 1 :]:
                whole_blob = i == 0 and b == cuts[-1]
                if not whole_blob and not (
                    cfg.min_width * line.height <= b - a <= cfg.max_width * line.height
                ):
                    continue
                part = _candidate_mask(line, area, columns, blob, a, b, cfg)
                if part.any():
                    found.append(Candidate(index, a, b, part))
    return found, all_cuts, areas


def features(
    line: Line, area: Region, cuts: list[int], candidate: Candidate, probabilities: np.ndarray
) -> np.ndarray:
    """What the candidate model weighs: the digit model's answer, the candidate's shape
    against the line's digit height, and the ink its cuts cross (0 at a blob's edge)."""
    rows = np.flatnonzero(candidate.mask.any(axis=1))
    cols = np.flatnonzero(candidate.mask.any(axis=0))
    width, height = (cols[-1] - cols[0] + 1) / line.height, (rows[-1] - rows[0] + 1) / line.height
    inner = lambda c: c not in (cuts[0], cuts[-1])  # noqa: E731
    left = area.column_ink[candidate.left] / line.stroke if inner(candidate.left) else 0.0
    right = area.column_ink[candidate.right - 1] / line.stroke if inner(candidate.right) else 0.0
    top_two = np.sort(probabilities)[-2:]
    digit = np.zeros(10)
    digit[int(np.argmax(probabilities))] = 1.0
    share = np.count_nonzero(candidate.mask) / max(area.column_ink.sum(), 1)
    return np.concatenate([
        [np.log(top_two[1] + 1e-6), top_two[1] - top_two[0], width, height, width * height,
         min(left, 4.0), min(right, 4.0), share, float(share > 0.99)],
        digit, digit * width,
    ])  # fmt: skip


@functools.cache
def load_weights(path: Path = WEIGHTS) -> dict:
    """The candidate model (read once per process)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def whole_digit_log_probability(weights: dict, rows: np.ndarray) -> np.ndarray:
    """log P(candidate is one whole digit) under the candidate model: one hidden layer of
    ReLUs, a logistic output (scikit-learn's MLPClassifier, its weights in JSON)."""
    z = (rows - np.asarray(weights["mean"])) / np.asarray(weights["scale"])
    hidden = np.maximum(z @ np.asarray(weights["hidden"]) + weights["hidden_bias"], 0.0)
    logits = hidden @ np.asarray(weights["out"]) + weights["out_bias"]
    return -np.logaddexp(0.0, -logits)


def _best_path(cuts: list[int], scores: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    """The cuts from a blob's first column to its last whose candidates' scores add up
    highest (cuts are sorted, so one pass left to right finds it)."""
    best: dict[int, tuple[float, list]] = {cuts[0]: (0.0, [])}
    for end in cuts[1:]:
        options = [
            (best[start][0] + scores[(start, end)], [*best[start][1], (start, end)])
            for start in cuts
            if start < end and start in best and (start, end) in scores
        ]
        if options:
            best[end] = max(options, key=lambda option: option[0])
    return best.get(cuts[-1], (0.0, []))[1]


def choose(
    found: list[Candidate],
    all_cuts: list[list[int]],
    probs: np.ndarray,
    rows: np.ndarray,
    weights: dict,
) -> list[int]:
    """Indices of the candidates read as the number, left to right: in each blob, the path
    of cuts maximising the sum of log P(whole digit) + log P(digit) + the per-digit bonus."""
    scores = whole_digit_log_probability(weights, rows) + np.log(probs.max(axis=1) + 1e-9)
    scores += weights["digit_bonus"]
    chosen = []
    for index, cuts in enumerate(all_cuts):
        where = {(c.left, c.right): k for k, c in enumerate(found) if c.blob == index}
        path = _best_path(cuts, {span: float(scores[k]) for span, k in where.items()})
        chosen += [where[span] for span in path]
    return chosen


def box(line: Line, area: Region, mask: np.ndarray) -> tuple[int, int, int, int]:
    """A candidate's box in the original image: the straightening undone, the scale too."""
    rows, cols = np.nonzero(mask)
    rows, cols = rows + area.top, cols + area.left
    original = cols - line.shifts[rows]
    s = line.scale
    return (int(original.min()) * s, int(rows.min()) * s,
            int(original.max() + 1) * s, int(rows.max() + 1) * s)  # fmt: skip


def read_number(
    grey: np.ndarray,
    probabilities: Callable[[np.ndarray], np.ndarray],
    cfg: ReaderConfig = ReaderConfig(),
) -> NumberReading:
    """Read the number in a grey image (any polarity). Raises NoDigitError on a blank image."""
    weights = cfg.weights or load_weights()
    line = find_line(grey, cfg.work_height)
    found, all_cuts, areas = candidates(line, cfg)
    if not found:
        raise NoDigitError("no digit found")
    views = np.stack([digit_from_ink(areas[c.blob].ink, c.mask) for c in found])
    probs = probabilities(views)
    rows = np.stack([
        features(line, areas[c.blob], all_cuts[c.blob], c, p)
        for c, p in zip(found, probs, strict=True)
    ])  # fmt: skip
    chosen = choose(found, all_cuts, probs, rows, weights)
    digits = [
        number_digit(probs[k], box(line, areas[found[k].blob], found[k].mask)) for k in chosen
    ]
    return NumberReading(digits, view=line.ink)

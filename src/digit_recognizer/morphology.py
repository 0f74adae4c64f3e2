"""The few image-morphology operations preprocessing needs, in NumPy.

SciPy's ndimage does all of this, but importing it takes about 0.3 s here (SciPy 1.17 pulls in
its array-API layer, which touches numpy.f2py): more than a third of a cold `digits predict`.
These functions give the same results as their ndimage namesakes with default arguments;
tests/test_preprocess.py checks them against SciPy on random images.
"""

from __future__ import annotations

import numpy as np


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True, in row-major order: row, first column, column after the last."""
    height, width = mask.shape
    # One False before the image and after each row, so every run starts and ends in the
    # flattened array: its changes of value alternate start, end, start, end...
    flat = np.zeros(1 + height * (width + 1), dtype=bool)
    flat[1:].reshape(height, width + 1)[:, :width] = mask
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    rows, starts = np.divmod(changes[0::2], width + 1)
    return rows, starts, changes[1::2] - rows * (width + 1)


def _touching_runs(rows, starts, ends, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of runs where j lies in the row below i and shares a column with it.

    Runs are sorted row-major, so with keys row * stride + column both their starts and
    their ends increase: the runs touching run i are one contiguous range of indices."""
    stride = width + 2
    start_keys, end_keys = rows * stride + starts, rows * stride + ends
    below = (rows + 1) * stride
    first = np.searchsorted(end_keys, below + starts, side="right")  # ends after i starts
    stop = np.searchsorted(start_keys, below + ends, side="left")  # starts before i ends
    counts = np.maximum(stop - first, 0)
    upper = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return upper, np.repeat(first, counts) + offsets


def _roots(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over `count` nodes joined by edges (a, b), vectorised: each pass hooks
    every larger root onto the smallest root it touches, then points every node straight
    at its root. parent[x] <= x throughout, so no cycle can form."""
    parent = np.arange(count)
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            return parent
        larger = np.maximum(root_a, root_b)[differ]
        np.minimum.at(parent, larger, np.minimum(root_a, root_b)[differ])
        while not np.array_equal(grand := parent[parent], parent):
            parent = grand


def label_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a 2-D mask, numbered 1..count, 0 for background, and the
    pixel count of each (index 0, the background, counts 0): counted per run of pixels,
    cheaper than np.bincount over the image."""
    mask = np.asarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.intp)  # intp: indexing with it needs no copy
    rows, starts, ends = _runs(mask)
    if len(rows) == 0:
        return labels, np.zeros(1, dtype=np.intp)
    roots = _roots(len(rows), *_touching_runs(rows, starts, ends, mask.shape[1]))
    _, run_labels = np.unique(roots, return_inverse=True)
    lengths = ends - starts
    labels[mask] = np.repeat(run_labels + 1, lengths)  # mask pixels are in run order
    return labels, np.bincount(run_labels + 1, weights=lengths).astype(np.intp)


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a 2-D mask, numbered 1..count, 0 for background
    (scipy.ndimage.label with its default structure; the numbering may differ)."""
    labels, sizes = label_sizes(mask)
    return labels, len(sizes) - 1


def bounding_boxes(labels: np.ndarray, count: int) -> list[list[int]]:
    """[left, top, right, bottom] (right and bottom exclusive) of components 1..count."""
    ys, xs = np.nonzero(labels)
    index = labels[ys, xs] - 1
    boxes = np.zeros((4, count), dtype=np.int64)
    boxes[:2] = np.iinfo(np.int64).max
    np.minimum.at(boxes[0], index, xs)
    np.minimum.at(boxes[1], index, ys)
    np.maximum.at(boxes[2], index, xs + 1)
    np.maximum.at(boxes[3], index, ys + 1)
    return boxes.T.tolist()


def _cross_combined(mask: np.ndarray, combine) -> np.ndarray:
    """combine (np.logical_and or np.logical_or) of each pixel with its 4 neighbours inside the
    image: in place on shifted views, a third of the time of stacking five padded shifts."""
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    for target, neighbour in (
        (np.s_[1:], np.s_[:-1]), (np.s_[:-1], np.s_[1:]),
        (np.s_[:, 1:], np.s_[:, :-1]), (np.s_[:, :-1], np.s_[:, 1:]),
    ):  # fmt: skip
        combine(out[target], mask[neighbour], out=out[target])
    return out


def binary_erosion(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 4 neighbours are all set (ndimage.binary_erosion, cross, border 0)."""
    out = _cross_combined(mask, np.logical_and)
    out[:1] = out[-1:] = False  # a neighbour outside the image is unset
    out[:, :1] = out[:, -1:] = False
    return out


def binary_dilation(mask: np.ndarray) -> np.ndarray:
    """Pixels set or next to a set pixel (ndimage.binary_dilation, cross structure)."""
    return _cross_combined(mask, np.logical_or)


def _shifted_extreme(image: np.ndarray, radius: int, axis: int, combine) -> np.ndarray:
    """combine (np.minimum or np.maximum) of each pixel with its neighbours up to `radius`
    away along `axis`, the window cut short at the edges."""
    out = image.copy()
    length = image.shape[axis]
    for shift in range(1, min(radius, length - 1) + 1):
        head = [slice(None)] * image.ndim
        tail = [slice(None)] * image.ndim
        head[axis], tail[axis] = slice(0, length - shift), slice(shift, length)
        combine(out[tuple(head)], image[tuple(tail)], out=out[tuple(head)])  # from after
        combine(out[tuple(tail)], image[tuple(head)], out=out[tuple(tail)])  # from before
    return out


def _rank_filter(image: np.ndarray, size: int, combine) -> np.ndarray:
    """min or max over a size x size square, separable. ndimage mirrors the edges (mode
    'reflect'); a mirrored pixel lies inside the window anyway, so for a min or max that is
    the window cut short at the edges: shifted slices (on a 35x35 image, a 5x5 opening took
    0.10 ms this way, 0.45 ms with sliding windows and 0.30 ms with Pillow's MinFilter)."""
    radius = size // 2
    rows = _shifted_extreme(np.asarray(image), radius, 0, combine)
    return _shifted_extreme(rows, radius, 1, combine)


def grey_erosion(image: np.ndarray, size: int) -> np.ndarray:
    """Minimum over an odd size x size square (ndimage.grey_erosion(image, size=size))."""
    return _rank_filter(image, size, np.minimum)


def grey_dilation(image: np.ndarray, size: int) -> np.ndarray:
    """Maximum over an odd size x size square (ndimage.grey_dilation(image, size=size))."""
    return _rank_filter(image, size, np.maximum)

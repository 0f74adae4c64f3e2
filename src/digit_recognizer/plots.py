"""Figures for reports: training curves, confusion matrix, sample and mistake grids.

Each function takes plain arrays, draws with Matplotlib's Agg backend and writes one PNG
atomically. Nothing here trains or evaluates.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from digit_recognizer.artifacts import save_figure


def _plot_history(axes: np.ndarray, history: dict[str, list[float]], label: str = "") -> None:
    prefix = f"{label} " if label else ""
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        epochs = np.arange(1, len(history.get(metric, [])) + 1)
        ax.plot(epochs, history.get(metric, []), marker="o", ms=3, label=f"{prefix}train")
        val = history.get(f"val_{metric}", [])
        ax.plot(epochs[: len(val)], val, marker="o", ms=3, ls="--", label=f"{prefix}validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()


def training_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Train and validation accuracy and loss per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _plot_history(axes, history)
    axes[0].set_title(f"{title} accuracy".strip())
    axes[1].set_title(f"{title} loss".strip())
    return save_figure(fig, path)


def comparison_curves(histories: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """One row per run: accuracy and loss curves side by side, shared axes for comparison."""
    fig, axes = plt.subplots(
        len(histories), 2, figsize=(10, 3.4 * len(histories)), squeeze=False, sharey="col"
    )
    for row, (name, history) in zip(axes, histories.items(), strict=True):
        _plot_history(row, history, label=name)
        row[0].set_title(f"{name}: accuracy")
        row[1].set_title(f"{name}: loss")
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrix(
    matrix: np.ndarray,
    class_names: tuple[str, ...],
    path: Path,
    columns: tuple[str, ...] | None = None,
    title: str | None = None,
) -> Path:
    """Counts, with the diagonal on a separate colour scale so mistakes stay visible. Rows are
    the true classes; `columns` (default: the classes) may add one, such as "no digit"."""
    columns = columns or class_names
    rows, cols = len(class_names), len(columns)
    fig, ax = plt.subplots(figsize=(6.5 + 0.45 * (cols - rows), 5.8))
    off_diagonal = np.where(np.eye(rows, cols, dtype=bool), 0, matrix)
    image = ax.imshow(off_diagonal, cmap="Reds")
    fig.colorbar(image, ax=ax, fraction=0.046, label="mistakes")
    for i in range(rows):
        for j in range(cols):
            weight = "bold" if i == j else "normal"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, weight=weight)
    ax.set_xticks(range(cols), columns, rotation=45 if cols and len(columns[0]) > 2 else 0)
    ax.set_yticks(range(rows), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"Confusion matrix ({int(matrix.sum())} test images)")
    return save_figure(fig, path)


def digit_grid(
    images: np.ndarray,
    true: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    path: Path,
    title: str,
    class_names: tuple[str, ...],
    columns: int = 8,
) -> Path:
    """A grid of 28x28 images labelled 'true -> predicted (confidence)'; red when wrong."""
    titles = [
        f"{class_names[t]}→{class_names[p]} {c:.0%}"
        for t, p, c in zip(true, predicted, confidence, strict=True)
    ]
    colors = ["crimson" if t != p else "black" for t, p in zip(true, predicted, strict=True)]
    return image_grid(list(images), titles, colors, path, title, columns)


def image_grid(
    images: list[np.ndarray],
    titles: list[str],
    colors: list[str],
    path: Path,
    title: str,
    columns: int = 8,
) -> Path:
    """Grey pictures of any size in a grid, each under its title in its colour."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.45 * columns, 1.7 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(images[k], cmap="gray")
        ax.set_title(titles[k], fontsize=8, color=colors[k])
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def robustness_bars(mean_accuracy: dict[str, dict[str, float]], path: Path) -> Path:
    """Mean accuracy over the three severities, one bar per model for each corruption."""
    models = list(mean_accuracy)
    corruptions = list(next(iter(mean_accuracy.values())))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(corruptions) * max(1, len(models) / 1.5) + 1))
    height = 0.8 / len(models)
    rows = np.arange(len(corruptions))
    for k, model in enumerate(models):
        values = [mean_accuracy[model][c] for c in corruptions]
        ax.barh(rows + k * height, values, height, label=model)
    ax.set_yticks(rows + height * (len(models) - 1) / 2, corruptions)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy (mean of 3 severities)")
    ax.grid(axis="x", alpha=0.3)
    # Below the axes: inside, it would hide the bars of whichever row it sat on.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=min(4, len(models)))
    ax.set_title("Robustness to corruptions")
    return save_figure(fig, path)


def reliability_diagram(
    bins: list[dict], bins_calibrated: list[dict], temperature: float, path: Path
) -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling; a
    perfectly calibrated model sits on the diagonal."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    titles = ("raw", f"temperature {temperature:.2f}")
    for ax, table, title in zip(axes, (bins, bins_calibrated), titles, strict=True):
        centres = [(b["low"] + b["high"]) / 2 for b in table]
        ax.bar(centres, [b["accuracy"] for b in table], width=1 / 15, edgecolor="k",
               alpha=0.7, label="accuracy")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], "o", ms=3)
        ax.set_xlabel("confidence")
        ax.set_title(f"Reliability: {title}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("accuracy")
    return save_figure(fig, path)

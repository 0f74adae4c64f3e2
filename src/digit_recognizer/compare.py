"""Compare evaluated runs: the seed's table (report.md) and curves side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digit_recognizer import plots
from digit_recognizer.artifacts import read_json, write_text
from digit_recognizer.errors import DigitsError
from digit_recognizer.paired import mcnemar_p_value


@dataclass(frozen=True)
class RunSummary:
    """One row of the comparison table, read from a run directory's files."""

    name: str
    model: str
    parameters: int
    accuracy: float
    macro_f1: float
    epochs: int
    best_epoch: int
    train_seconds: float
    ms_per_image: float
    test_images: int


def summarize_run(run_dir: Path) -> tuple[RunSummary, dict[str, list[float]]]:
    run_dir = Path(run_dir)
    needed = ["config.json", "history.json", "metrics.json"]
    if missing := [name for name in needed if not (run_dir / name).is_file()]:
        raise DigitsError(f"{run_dir}: missing {', '.join(missing)} (train and evaluate it first)")
    config, history, metrics = (read_json(run_dir / name) for name in needed)
    val_loss = history.get("val_loss", [])
    summary = RunSummary(
        name=run_dir.name,
        model=config["config"]["model"],
        parameters=metrics["parameters"],
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        epochs=len(history.get("loss", [])),
        best_epoch=val_loss.index(min(val_loss)) + 1 if val_loss else 0,
        train_seconds=sum(history.get("epoch_seconds", [])),
        ms_per_image=metrics["ms_per_image"],
        test_images=metrics["test_images"],
    )
    return summary, history


def markdown_table(rows: list[RunSummary]) -> str:
    header = (
        "| run | model | parameters | test accuracy | macro F1 | epochs (best) "
        "| training time | inference (ms/image) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r.name} | {r.model} | {r.parameters:,} | {r.accuracy:.2%} | {r.macro_f1:.4f} "
        f"| {r.epochs} ({r.best_epoch}) | {r.train_seconds:.0f} s | {r.ms_per_image:.3f} |\n"
        for r in rows
    )
    return header + body


def paired_with_best(run_dirs: list[Path]) -> list[dict]:
    """Each run against the most accurate one, on the same test images: how many only one
    of the two reads right, and McNemar's p-value (`paired.mcnemar_p_value`): whether the
    gap between them could be chance. Empty if a run's metrics.json predates `misread` or
    the runs were tested on different images."""
    runs = [(Path(run).name, read_json(Path(run) / "metrics.json")) for run in run_dirs]
    if len(runs) < 2 or any("misread" not in metrics for _, metrics in runs):
        return []
    if len({(m["test_images"], len(m["confusion_matrix"])) for _, m in runs}) > 1:
        return []
    best_name, best = max(runs, key=lambda run: run[1]["accuracy"])
    rows = []
    for name, metrics in runs:
        if metrics is best:
            continue
        missed, missed_by_best = set(metrics["misread"]), set(best["misread"])
        only_best, only_run = len(missed - missed_by_best), len(missed_by_best - missed)
        rows.append(
            {"run": name, "best": best_name, "only_best": only_best, "only_run": only_run,
             "p_value": mcnemar_p_value(only_best, only_run)}
        )  # fmt: skip
    return rows


def paired_table(rows: list[dict], images: int) -> str:
    """`paired_with_best`'s rows as markdown, with how to read them."""
    if not rows:
        return ""
    body = "".join(
        f"| {r['run']} | {r['best']} | {r['only_best']} | {r['only_run']} | {r['p_value']:.2g} |\n"
        for r in rows
    )
    return (
        f"\nIs the gap chance? Of the same {images:,} test images, the ones only one run "
        "reads right, and McNemar's exact p-value: the chance of a split at least this "
        "uneven if both runs were equally good (under 0.05: unlikely to be chance).\n\n"
        "| run | against | only it reads right | only this run reads right | p |\n"
        "|---|---|---:|---:|---:|\n" + body
    )


def compare(run_dirs: list[Path], out_dir: Path) -> tuple[list[RunSummary], Path]:
    """Write `report.md` and `comparison.png` into `out_dir`; return the rows and report path."""
    if not run_dirs:
        raise DigitsError("give at least one run directory to compare")
    summaries, histories = [], {}
    for run_dir in run_dirs:
        summary, history = summarize_run(run_dir)
        summaries.append(summary)
        histories[summary.name] = history
    out_dir = Path(out_dir)
    plots.comparison_curves(histories, out_dir / "comparison.png")
    best = max(summaries, key=lambda r: r.accuracy)
    text = (
        "# Model comparison\n\n"
        + markdown_table(summaries)
        + f"\nTest set: {summaries[0].test_images:,} images. Best: **{best.name}** "
        f"({best.accuracy:.2%}). Inference time is batched (512 images per call), "
        "Keras on the CPU; epochs counts all epochs run, the best one (by validation loss) "
        "is the saved model.\n"
        + paired_table(paired_with_best(run_dirs), summaries[0].test_images)
        + "\n![curves](comparison.png)\n"
    )
    return summaries, write_text(out_dir / "report.md", text)


# --- Leaderboard of every run ----------------------------------------------------------


def _group_key(config: dict) -> str:
    """Runs that differ only by seed (or where the data lives) are one entry."""
    settings = {k: v for k, v in config["config"].items() if k not in ("seed", "data_dir")}
    return json.dumps(settings, sort_keys=True)


def leaderboard(runs_root: Path, robustness_file: Path | None = None) -> str:
    """Markdown: every evaluated run under `runs_root`, seeds of one setting grouped as mean
    ± std, best first."""
    runs_root = Path(runs_root)
    robustness = read_json(robustness_file) if robustness_file and robustness_file.is_file() else {}
    groups: dict[str, list[Path]] = {}
    for metrics_path in sorted(runs_root.glob("*/metrics.json")):
        run = metrics_path.parent
        if (run / "config.json").is_file():
            groups.setdefault(_group_key(read_json(run / "config.json")), []).append(run)
    if not groups:
        raise DigitsError(f"no evaluated runs under {runs_root}")
    rows = []
    for runs in groups.values():
        metrics = [read_json(run / "metrics.json") for run in runs]
        accuracy = np.array([m["accuracy"] for m in metrics])
        corrupted = [robustness[r.name]["mean_corrupted"] for r in runs if r.name in robustness]
        ece = [m["ece"] for m in metrics if m.get("ece") is not None]
        seconds = [sum(read_json(r / "history.json").get("epoch_seconds", [])) for r in runs]
        spread = f" ± {accuracy.std(ddof=1):.2%} ({len(runs)} seeds)" if len(runs) > 1 else ""
        cells = [
            ", ".join(run.name for run in runs),
            read_json(runs[0] / "config.json")["config"]["model"],
            f"{metrics[0]['parameters']:,}",
            f"{accuracy.mean():.2%}{spread}",
            f"{np.mean([m['macro_f1'] for m in metrics]):.4f}",
            f"{np.mean(ece):.2%}" if ece else "-",
            f"{np.mean(corrupted):.2%}" if corrupted else "-",
            f"{np.mean(seconds):.0f} s",
            f"{np.mean([m['ms_per_image'] for m in metrics]):.3f}",
        ]
        rows.append((accuracy.mean(), "| " + " | ".join(cells) + " |\n"))
    header = (
        "| runs | model | parameters | test accuracy | macro F1 | ECE | mean corrupted "
        "| train time | ms/image |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    return header + "".join(row for _, row in sorted(rows, key=lambda r: -r[0]))

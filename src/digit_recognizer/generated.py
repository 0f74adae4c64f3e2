"""Generated digits a training run adds to MNIST's splits: digits drawn by the generator in
its training hands (`TrainConfig.synth`), MNIST's own digits again as coarse scans
(`TrainConfig.scans`), and MNIST's and drawn digits as 8x8 scans of a form reader
(`TrainConfig.form_scans`), to the training split and, a fixed set, to the validation split.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np

from digit_recognizer import scans, synth
from digit_recognizer.config import TrainConfig

log = logging.getLogger(__name__)

# Generated digits in the validation split of every run that trains on them: one fixed set,
# so that runs with different shares (`synth`) are compared on the same images.
GENERATED_VALIDATION = 2000


def _drawn_digits(cfg: TrainConfig, train_count: int, val_count: int, provenance: dict) -> dict:
    """Generated digits in synth.TRAIN_HANDS, `cfg.synth` times `train_count` for training and
    `val_count` for validation: {split: (views, labels)}."""
    added = {}
    for name, count, seed in (
        ("train", round(cfg.synth * train_count), cfg.synth_seed),
        ("validation", val_count, cfg.synth_seed + 1),
    ):
        settings = synth.SynthConfig(count=count, seed=seed, shape=cfg.synth_shape)
        added[name] = synth.preprocessed_views(*synth.training_set(settings))
        provenance[name] = {**settings.as_dict(), "images": len(added[name][1])}
    return added


def _scanned_digits(cfg: TrainConfig, split: tuple, val_count: int, provenance: dict) -> dict:
    """`cfg.scans` of the training split's MNIST digits again as coarse scans, and `val_count`
    of the validation split's: {split: (views, labels)}."""
    x_tr, y_tr, x_val, y_val = split
    record = {
        "share": cfg.scans,
        "hand": asdict(synth.MNIST_SCAN),
        "version": synth.GENERATOR_VERSION,
    }
    added = {}
    for name, (x, y), count, seed in (
        ("train", (x_tr, y_tr), round(cfg.scans * len(x_tr)), cfg.synth_seed + 2),
        ("validation", (x_val, y_val), min(val_count, len(x_val)), cfg.synth_seed + 3),
    ):
        chosen = np.random.default_rng(seed).choice(len(x), count, replace=False)
        added[name] = synth.scanned_views(x[chosen], y[chosen], seed)
        record[name] = {"seed": seed, "images": len(added[name][1])}
    provenance["scans"] = record
    return added


def _form_scanned_digits(
    cfg: TrainConfig, pools: dict, count: int, val_count: int, provenance: dict
) -> dict:
    """`cfg.form_scans` times `count` digits of the training pool (MNIST's and drawn ones)
    again as 8x8 form scans (scans.form_scan), and `val_count` of the validation pool:
    {split: (views, labels)}."""
    record = {
        "share": cfg.form_scans,
        "box": list(scans.FORM_BOX),
        "version": synth.GENERATOR_VERSION,
    }
    added = {}
    for name, wanted, seed in (
        ("train", round(cfg.form_scans * count), cfg.synth_seed + 4),
        ("validation", val_count, cfg.synth_seed + 5),
    ):
        x, y = pools[name]
        chosen = np.random.default_rng(seed).choice(len(x), min(wanted, len(x)), replace=False)
        added[name] = synth.block_scanned_views(x[chosen], y[chosen], scan=scans.form_scan)
        record[name] = {"seed": seed, "images": len(added[name][1])}
    provenance["form_scans"] = record
    return added


def with_generated(cfg: TrainConfig, split: tuple, provenance: dict) -> tuple:
    """The split with generated digits added to training (drawn ones, `cfg.synth`, MNIST's
    as coarse scans, `cfg.scans`, both as form scans, `cfg.form_scans`) and a fixed set of
    others to validation, so the choice of epoch sees them too. Keras shuffles the training
    images every epoch, so each batch mixes every source. `provenance` records what was
    added, for config.json and the model card."""
    x_tr, y_tr, x_val, y_val = split
    val_count = GENERATED_VALIDATION if cfg.limit is None else max(10, cfg.limit // 10)
    sources = []
    if cfg.synth:
        sources.append(_drawn_digits(cfg, len(x_tr), val_count, provenance))
    if cfg.form_scans:  # from MNIST's digits and the drawn ones, before the coarse scans
        pools = {
            name: (
                np.concatenate([x, *(s[name][0] for s in sources)]),
                np.concatenate([y, *(s[name][1] for s in sources)]),
            )
            for name, x, y in (("train", x_tr, y_tr), ("validation", x_val, y_val))
        }
        sources.append(_form_scanned_digits(cfg, pools, len(x_tr), val_count, provenance))
    if cfg.scans:
        sources.append(_scanned_digits(cfg, split, val_count, provenance))
    if not sources:
        return split
    log.info(
        "added %d generated digits to training, %d to validation",
        sum(len(s["train"][1]) for s in sources), sum(len(s["validation"][1]) for s in sources),
    )  # fmt: skip
    return (
        np.concatenate([x_tr, *(s["train"][0] for s in sources)]),
        np.concatenate([y_tr, *(s["train"][1] for s in sources)]),
        np.concatenate([x_val, *(s["validation"][0] for s in sources)]),
        np.concatenate([y_val, *(s["validation"][1] for s in sources)]),
    )

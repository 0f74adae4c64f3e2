"""Training: fit a registered model on a dataset and write a run directory.

A run directory holds everything needed to evaluate, compare, resume and reproduce:
  model.keras / model.h5  best model by validation loss (the seed's formats; the .h5
                          without training-only augmentation layers)
  last.keras              model + optimizer after the last finished epoch (for --resume)
  history.json            per-epoch metrics, written after every epoch
  config.json             settings, seed, library versions, data checksums
  train.log               what happened, epoch by epoch
Settings live in config.py; this module only trains.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from digit_recognizer.artifacts import read_json, write_json
from digit_recognizer.augment import augmentation, label_rotated_batches, with_augmentation
from digit_recognizer.config import (
    DEFAULT_BATCH_SIZE,
    TrainConfig,
    load_config,
    recipe_config,
    save_config,
    split_of,
    validation_seed,
)
from digit_recognizer.data import Dataset, load_dataset, split_validation
from digit_recognizer.errors import DigitsError
from digit_recognizer.generated import with_generated
from digit_recognizer.models import (
    build_model,
    inference_model,
    load_model,
    pretrained_base,
    save_model_atomic,
)

log = logging.getLogger(__name__)

MONITOR = "val_loss"  # what EarlyStopping and the best checkpoint watch; never the test set
__all__ = ["MONITOR", "Run", "TrainConfig", "recipe_config", "train"]


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam or AdamW, with a constant rate (plateau) or a one-cycle schedule: linear warm-up
    over `warmup` of the steps to `learning_rate`, then cosine decay to 1 % of it."""
    rate: float | keras.optimizers.schedules.LearningRateSchedule = cfg.learning_rate
    if cfg.schedule == "onecycle":
        total = cfg.epochs * steps_per_epoch
        warmup = max(1, round(total * cfg.warmup))
        rate = keras.optimizers.schedules.CosineDecay(
            cfg.learning_rate / 25, max(1, total - warmup), alpha=0.01,
            warmup_target=cfg.learning_rate, warmup_steps=warmup,
        )  # fmt: skip
    elif cfg.schedule != "plateau":
        raise DigitsError(f"unknown schedule {cfg.schedule!r}; choose plateau or onecycle")
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer != "adam":
        raise DigitsError(f"unknown optimizer {cfg.optimizer!r}; choose adam or adamw")
    return keras.optimizers.Adam(rate)


def _one_hot(cfg: TrainConfig) -> bool:
    """Keras's sparse cross-entropy has no label smoothing and takes no soft targets: both
    need one-hot targets and the categorical loss."""
    return bool(cfg.label_smoothing or cfg.teacher)


def make_loss(cfg: TrainConfig) -> keras.losses.Loss:
    if _one_hot(cfg):
        return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def _targets(cfg: TrainConfig, labels: np.ndarray) -> np.ndarray:
    return keras.utils.to_categorical(labels, 10) if _one_hot(cfg) else labels


def _trained_on_the_same_data(run: str, cfg: TrainConfig, role: str) -> TrainConfig:
    """The settings of `run` (a teacher, a starting point), refused in one line unless it
    trained on the same split and generated digits: no validation image may leak in."""
    other = load_config(Path(run))
    generated = ("synth", "synth_seed", "synth_shape", "scans", "form_scans")  # both splits
    if split_of(other) != split_of(cfg) or any(
        getattr(other, name) != getattr(cfg, name) for name in generated
    ):
        raise DigitsError(f"{role} {run} trained on other data or another split")
    return other


def _distilled_targets(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Half the label, half the teacher's probabilities (on the image before augmentation):
    one network learns what several seeds averaged know, which digits look alike included."""
    _trained_on_the_same_data(cfg.teacher, cfg, "the teacher")
    teacher = inference_model(load_model(Path(cfg.teacher) / "model.keras"))
    soft = teacher.predict(_add_channel(images), batch_size=512, verbose=0)
    return 0.5 * _targets(cfg, labels) + 0.5 * soft


def compile_model(model: keras.Model, cfg: TrainConfig, train_images: int) -> None:
    """Compile with cfg's optimizer, schedule and loss; the schedule needs the step count."""
    steps_per_epoch = int(np.ceil(train_images / cfg.batch_size))
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch), loss=make_loss(cfg), metrics=["accuracy"]
    )


@dataclass
class Run:
    """What `train` returns: where the run lives and how it went."""

    out_dir: Path
    config: TrainConfig
    history: dict[str, list[float]] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def train_seconds(self) -> float:
        return float(sum(self.history.get("epoch_seconds", [])))

    @property
    def best_epoch(self) -> int:
        """1-based epoch whose weights model.keras holds."""
        values = self.history.get(MONITOR, [])
        return int(np.argmin(values)) + 1 if values else 0


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: record metrics in history.json, save last.keras, and save
    model.keras when val_loss improves.

    Keras's ModelCheckpoint writes its file in place, so Ctrl-C during a save would leave a
    broken best model; this does the same job with atomic writes, and keeps the history
    across --resume.
    """

    def __init__(self, out_dir: Path, history: dict[str, list[float]]):
        super().__init__()
        self.out_dir = out_dir
        self.history = {k: list(v) for k, v in history.items()}
        self.best = min(self.history.get(MONITOR, []), default=math.inf)
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        logs["epoch_seconds"] = time.perf_counter() - self._epoch_start
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        improved = logs[MONITOR] < self.best
        if improved:
            self.best = logs[MONITOR]
            save_model_atomic(self.model, self.out_dir / "model.keras")
        save_model_atomic(self.model, self.out_dir / "last.keras")
        write_json(self.out_dir / "history.json", self.history)
        log.info(
            "epoch %d: loss %.4f acc %.4f val_loss %.4f val_acc %.4f (%.1f s)%s",
            epoch + 1, logs["loss"], logs.get("accuracy", float("nan")), logs[MONITOR],
            logs.get("val_accuracy", float("nan")), logs["epoch_seconds"],
            " best so far, saved model.keras" if improved else "",
        )  # fmt: skip


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, on --resume, counts patience from the epochs already run."""

    def __init__(self, history: dict[str, list[float]], **kwargs: Any):
        super().__init__(**kwargs)
        self.previous = list(history.get(self.monitor, []))

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self.previous:
            best_index = int(np.argmin(self.previous))
            self.best = self.previous[best_index]
            self.wait = len(self.previous) - 1 - best_index


def _add_channel(x: np.ndarray) -> np.ndarray:
    return x[..., np.newaxis]  # (N, 28, 28) -> (N, 28, 28, 1)


def _attach_log_file(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package_logger = logging.getLogger("digit_recognizer")
    package_logger.addHandler(handler)
    package_logger.setLevel(min(package_logger.getEffectiveLevel(), logging.INFO))
    return handler


def _starting_point(
    cfg: TrainConfig, out_dir: Path, resume: bool
) -> tuple[TrainConfig, dict[str, list[float]]]:
    """The settings and history to train from: `cfg` for a new run, the saved ones (epochs
    possibly raised) to resume. Refuses to overwrite a finished run."""
    if (cfg.elastic or cfg.warp or cfg.flag_rotation is not None) and not cfg.augment:
        raise DigitsError(
            "--elastic, --warp and --flag-rotation change the augmentation: add --augment"
        )
    if not resume:
        if (out_dir / "config.json").exists():
            raise DigitsError(
                f"{out_dir} already holds a run; choose another --out or use --resume"
            )
        history: dict[str, list[float]] = {}
    else:
        if not (out_dir / "last.keras").is_file():
            raise DigitsError(f"nothing to resume in {out_dir} (no last.keras)")
        saved = load_config(out_dir)
        cfg = replace(saved, epochs=max(cfg.epochs, saved.epochs))
        history = read_json(out_dir / "history.json")
    if cfg.batch_size is None:
        cfg = replace(cfg, batch_size=DEFAULT_BATCH_SIZE.get(cfg.model, 128))
    return cfg, history


def _model_to_train(cfg: TrainConfig, out_dir: Path, resume: bool) -> keras.Model:
    """The saved model to resume, or a new one with its augmentation block in front."""
    if resume:
        return load_model(out_dir / "last.keras")
    model = _network(cfg)
    if not cfg.augment:
        return model
    rotation = cfg.rotation if cfg.flag_rotation is None else 0.0  # then the batches rotate
    augment = augmentation(
        rotation, cfg.shift, cfg.zoom, cfg.seed, cfg.erase, cfg.contrast, cfg.noise,
        cfg.stroke, cfg.elastic, cfg.warp,
    )  # fmt: skip
    return with_augmentation(model, augment)


def _network(cfg: TrainConfig) -> keras.Model:
    """A new network, or (`init_from`) another run's trained one, without its augmentation:
    training goes on from there with this run's settings (a gentle change of recipe)."""
    if cfg.init_from is None:
        return build_model(cfg.model, cfg.weights)
    if _trained_on_the_same_data(cfg.init_from, cfg, "the starting run").model != cfg.model:
        raise DigitsError(f"the starting run {cfg.init_from} trained another model")
    if not (Path(cfg.init_from) / "model.keras").is_file():
        raise DigitsError(f"the starting run {cfg.init_from} has no model.keras")
    return inference_model(load_model(Path(cfg.init_from) / "model.keras"))


def _callbacks(cfg: TrainConfig, checkpoint: RunCheckpoint, extra) -> list:
    """Checkpoint, early stopping (patience counted across --resume), the plateau schedule."""
    callbacks: list[keras.callbacks.Callback] = [
        checkpoint,
        ResumableEarlyStopping(
            checkpoint.history, monitor=MONITOR, patience=cfg.patience, restore_best_weights=True
        ),
        *extra,
    ]
    if cfg.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=MONITOR, factor=cfg.lr_factor, patience=1, min_lr=1e-5
            )
        )
    return callbacks


def _training_data(cfg: TrainConfig, x_tr: np.ndarray, y_tr: np.ndarray) -> tuple:
    """`fit`'s training arguments: images and targets, or (with --flag-rotation) batches in
    which 1s and 7s are turned less than the other digits."""
    images = _add_channel(x_tr)
    targets = _distilled_targets(cfg, x_tr, y_tr) if cfg.teacher else _targets(cfg, y_tr)
    if cfg.flag_rotation is None:  # (set, it implies --augment: `_starting_point`)
        return images, targets
    batches = label_rotated_batches(
        images, targets, y_tr, cfg.rotation, cfg.flag_rotation, cfg.batch_size, cfg.seed
    )
    return (batches,)


def _fit(model, cfg, train_xy, val_xy, checkpoint, until: int, verbose, extra) -> bool:
    """Train up to epoch `until`; False if Ctrl-C stopped it (the best model is kept)."""
    arrays = len(train_xy) == 2  # images and targets; else batches that shuffle themselves
    try:
        model.fit(
            *train_xy,
            validation_data=val_xy,
            epochs=until,
            initial_epoch=len(checkpoint.history.get("loss", [])),
            batch_size=cfg.batch_size if arrays else None,
            shuffle=arrays,
            callbacks=_callbacks(cfg, checkpoint, extra),
            verbose=verbose,
        )
        return True
    except KeyboardInterrupt:
        log.warning(
            "interrupted; best model kept in %s, continue with --resume", checkpoint.out_dir
        )
        return False


def _save_deployable_h5(out_dir: Path) -> None:
    """model.h5 for deployment: the best inference model, without training-only layers
    (which the legacy format cannot always serialise anyway)."""
    if (out_dir / "model.keras").is_file():
        save_model_atomic(
            inference_model(load_model(out_dir / "model.keras")), out_dir / "model.h5"
        )


def train(
    cfg: TrainConfig,
    out_dir: Path,
    data: Dataset | None = None,
    resume: bool = False,
    verbose: int | str = "auto",
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> Run:
    """Train `cfg.model` and write the run directory. Ctrl-C keeps the best checkpoint.

    With `resume=True`, continue the run in `out_dir` from its last finished epoch, using
    the settings saved there (only `cfg.epochs` may be raised).
    """
    out_dir = Path(out_dir)
    cfg, history = _starting_point(cfg, out_dir, resume)
    keras.utils.set_random_seed(cfg.seed)
    model = _model_to_train(cfg, out_dir, resume)  # before the data: a bad name fails at once
    if data is None:
        data = load_dataset(cfg.dataset, Path(cfg.data_dir) if cfg.data_dir else None, cfg.limit)
    generated: dict = {}
    x_tr, y_tr, x_val, y_val = with_generated(
        cfg, split_validation(data.x_train, data.y_train, cfg.val_split, validation_seed(cfg)),
        generated,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = _attach_log_file(out_dir)
    try:
        if resume:
            log.info("resuming %s from epoch %d", out_dir, len(history.get("loss", [])))
        else:
            save_config(out_dir, cfg, data, len(x_tr), len(x_val), generated)
            compile_model(model, cfg, len(x_tr))
            log.info("training %s on %d images, validating on %d", cfg.model, len(x_tr), len(x_val))
        checkpoint = RunCheckpoint(out_dir, history)
        train_xy = _training_data(cfg, x_tr, y_tr)
        val_xy = (_add_channel(x_val), _targets(cfg, y_val))
        base = pretrained_base(model) if cfg.weights != "none" else None
        if base is not None and not resume:
            base.trainable = False  # phase 1: only the new head learns
        finished = _fit(
            model, cfg, train_xy, val_xy, checkpoint, cfg.epochs, verbose, extra_callbacks
        )
        if base is not None and cfg.fine_tune_epochs and finished:
            # Phase 2: the whole network, at a tenth of the rate, so the pretrained features
            # are adjusted rather than overwritten.
            base.trainable = True
            fine_tune = replace(
                cfg, learning_rate=cfg.learning_rate / 10, epochs=cfg.fine_tune_epochs
            )
            compile_model(model, fine_tune, len(x_tr))
            log.info("fine-tuning the whole network for %d epochs", cfg.fine_tune_epochs)
            until = cfg.epochs + cfg.fine_tune_epochs
            finished = _fit(
                model, cfg, train_xy, val_xy, checkpoint, until, verbose, extra_callbacks
            )
        run = Run(out_dir, cfg, checkpoint.history, interrupted=not finished)
        _save_deployable_h5(out_dir)
        log.info("trained %d epochs in %.1f s", run.epochs_run, run.train_seconds)
        return run
    finally:
        logging.getLogger("digit_recognizer").removeHandler(handler)
        handler.close()

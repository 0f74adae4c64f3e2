"""Training settings: the TrainConfig dataclass, the named recipes, and a run's config.json.

Evaluation, export and ensembles read a run's settings from here without importing training.
Each field carries its help text (`metadata["help"]`): the CLI builds `digits train`'s
options from these fields, so a new setting needs one edit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digit_recognizer.artifacts import library_versions, read_json, write_json
from digit_recognizer.errors import DigitsError

# Chosen on the validation split (seed 42, with ReduceLROnPlateau): the MLP's best validation
# accuracy was 97.70 % at batch 128, 97.87 % at 64 and 98.00 % at 32 (the Keras default);
# the CNN is fine at 128 and 4x faster per epoch than at 32.
DEFAULT_BATCH_SIZE = {"mlp": 32}


def _setting(default: Any, help: str, cli: bool = True) -> Any:
    """A dataclass field with its help text; `cli=False` keeps it off `digits train`."""
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Saved as config.json beside the model."""

    recipe: str = _setting("baseline", "Preset the other settings start from.", cli=False)
    model: str = _setting("cnn", "mlp, cnn, fast, deep, deep48, vgg, mobilenet, efficientnet.")
    epochs: int = _setting(20, "Upper bound; EarlyStopping usually ends sooner.")
    batch_size: int | None = _setting(None, "Default: 32 for mlp, 128 otherwise.")
    learning_rate: float = _setting(1e-3, "Adam's rate; the peak rate with onecycle.")
    schedule: str = _setting("plateau", "plateau (ReduceLROnPlateau) or onecycle.")
    warmup: float = _setting(0.25, "onecycle: fraction of the steps spent warming up.", cli=False)
    optimizer: str = _setting("adam", "adam or adamw.")
    weight_decay: float = _setting(1e-4, "adamw only.", cli=False)
    label_smoothing: float = _setting(0.0, "Share of each target moved to the other classes.")
    val_split: float = _setting(0.1, "Fraction of the training set held out to choose epochs.")
    patience: int = _setting(3, "Epochs without val_loss improvement before stopping.")
    lr_factor: float = _setting(0.3, "ReduceLROnPlateau factor.", cli=False)
    augment: bool = _setting(False, "Random rotation/shift/zoom of the training images.")
    rotation: float = _setting(10.0, "Augmentation: max rotation, degrees.", cli=False)
    flag_rotation: float | None = _setting(
        None, "With --augment: max rotation of 1s and 7s, degrees (default: as the others)."
    )
    shift: float = _setting(0.1, "Augmentation: max shift, fraction of the image.", cli=False)
    zoom: float = _setting(0.1, "Augmentation: max zoom in or out, fraction.", cli=False)
    erase: float = _setting(0.0, "Augmentation: probability of an erased patch.", cli=False)
    contrast: float = _setting(0.0, "Augmentation: max contrast/brightness change.", cli=False)
    noise: float = _setting(0.0, "Augmentation: max Gaussian noise, fraction of 0-255.", cli=False)
    stroke: float = _setting(0.0, "Augmentation: probability of a stroke width change.", cli=False)
    elastic: float = _setting(0.0, "With --augment: elastic distortion strength, px (34).")
    warp: bool = _setting(False, "With --augment: rotation/shift/zoom as one resampling.")
    weights: str = _setting("none", "mobilenet/efficientnet: none, imagenet or a weights file.")
    fine_tune_epochs: int = _setting(0, "Pretrained weights: epochs with the base unfrozen.")
    synth: float = _setting(0.0, "Generated digits added to training, share of MNIST's (0.2).")
    synth_shape: float = _setting(0.0, "Generated digits' shape variety (0.1 of their size).")
    scans: float = _setting(0.0, "MNIST digits added again as coarse scans, share of MNIST's.")
    form_scans: float = _setting(
        0.0, "MNIST and generated digits added again as 8x8 form scans, share of MNIST's."
    )
    synth_seed: int = _setting(0, "Seed of the generated digits.", cli=False)
    teacher: str | None = _setting(None, "Run folder whose probabilities join the labels.")
    init_from: str | None = _setting(
        None, "Run folder whose trained network this run starts from (same model and data)."
    )
    seed: int = _setting(42, "Random seed.")
    split_seed: int | None = _setting(None, "Validation split's seed (default: --seed).")
    dataset: str = _setting("mnist", "mnist or fashion-mnist.")
    data_dir: str | None = _setting(None, "Folder with the IDX files or mnist.npz.")
    limit: int | None = _setting(None, "Use the first N train and N test images (smoke runs).")

    def __post_init__(self) -> None:
        """Refuse settings no training can use, in one line each (the CLI passes them on)."""
        checks = {
            "epochs must be at least 1": self.epochs >= 1,
            "batch size must be at least 1": self.batch_size is None or self.batch_size >= 1,
            "learning rate must be positive": self.learning_rate > 0,
            "label smoothing must be in [0, 0.5]": 0 <= self.label_smoothing <= 0.5,
            "validation split must be in (0, 1)": 0 < self.val_split < 1,
            "patience must be at least 1": self.patience >= 1,
            "fine-tune epochs cannot be negative": self.fine_tune_epochs >= 0,
            "elastic strength cannot be negative": self.elastic >= 0,
            "the 1s' and 7s' rotation must be in [0, 180]": self.flag_rotation is None
            or 0 <= self.flag_rotation <= 180,
            "the generated share cannot be negative": self.synth >= 0,
            "the shape variety must be in [0, 0.3]": 0 <= self.synth_shape <= 0.3,
            "the scanned share must be in [0, 1]": 0 <= self.scans <= 1,
            "the form-scanned share must be in [0, 1]": 0 <= self.form_scans <= 1,
            "limit must be at least 10 images": self.limit is None or self.limit >= 10,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise DigitsError(f"invalid training settings: {'; '.join(failed)}")


# Named presets; CLI options override single fields. "baseline" is the seed project's recipe
# (Adam, batch 128, early stopping) with ReduceLROnPlateau. The others train with one-cycle
# schedules over a fixed budget, so early stopping is effectively off (patience = epochs) and
# the budget is the --epochs knob. docs/decisions.md says how each was chosen.
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    # 99 % in two epochs of a LeNet-sized network.
    "fast": {
        "model": "fast",
        "batch_size": 256,
        "epochs": 2,
        "learning_rate": 1e-2,
        "schedule": "onecycle",
        "warmup": 0.1,
        "patience": 2,
    },
    # The `deep` network with geometric augmentation as one resampling (`warp`).
    "accurate": {
        "model": "deep",
        "batch_size": 256,
        "epochs": 10,
        "learning_rate": 5e-3,
        "schedule": "onecycle",
        "warmup": 0.1,
        "patience": 100,
        "augment": True,
        "warp": True,
    },
    # Geometry plus occlusion, faint ink, noise and stroke width: what `digits robustness`
    # tests, except blur and elastic distortion, which it never trains on.
    "robust": {
        "model": "deep48",
        "batch_size": 256,
        "epochs": 20,
        "learning_rate": 5e-3,
        "schedule": "onecycle",
        "warmup": 0.1,
        "patience": 100,
        "augment": True,
        "rotation": 20.0,
        "shift": 0.15,
        "zoom": 0.2,
        "erase": 0.3,
        "contrast": 0.6,
        "noise": 0.3,
        "stroke": 0.4,
    },
}
# `accurate` in 4 epochs: label smoothing, a peak of 1e-2 and batch 128 reach 99.5 %.
RECIPES["accurate-short"] = {
    **RECIPES["accurate"], "epochs": 4, "batch_size": 128, "learning_rate": 1e-2,
    "label_smoothing": 0.1,
}  # fmt: skip
RECIPE_ALIASES = {"seed": "baseline"}  # the old name of `baseline`, still accepted


def recipe_config(recipe: str, **overrides: Any) -> TrainConfig:
    """A recipe's TrainConfig with the given fields replaced (None values are ignored)."""
    recipe = RECIPE_ALIASES.get(recipe, recipe)
    if recipe not in RECIPES:
        raise DigitsError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    settings = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(recipe=recipe, **settings)


def config_from_dict(settings: dict) -> TrainConfig:
    """A TrainConfig from a saved config.json's "config": unknown keys ignored, old recipe
    names mapped to today's."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in settings.items() if k in known}
    if "recipe" in values:
        values["recipe"] = RECIPE_ALIASES.get(values["recipe"], values["recipe"])
    return TrainConfig(**values)


def save_config(
    out_dir: Path, cfg: TrainConfig, data, n_train: int, n_val: int, generated: dict
) -> Path:
    """Write a run's config.json: its settings, seed, library versions and what it trained
    on (`data`, a `data.Dataset`: name, checksums, split sizes, generated digits)."""
    return write_json(
        out_dir / "config.json",
        {
            "config": asdict(cfg),
            "seed": cfg.seed,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": library_versions(),
            "data": {
                "dataset": data.name,
                "source": data.source,
                "sha256": data.checksums,
                "train": n_train,
                "validation": n_val,
                "test": len(data.x_test),
                "class_names": list(data.class_names),
                "generated": generated or None,  # synth.SynthConfig of each split, if any
            },
        },
    )


def load_config(run_dir: str | Path) -> TrainConfig:
    """The settings a run folder was trained with (its config.json)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DigitsError(f"{run_dir} is not a run directory (no config.json)")
    return config_from_dict(read_json(path)["config"])


def validation_seed(cfg: TrainConfig) -> int:
    """The seed of the run's validation split: members of an ensemble train from different
    seeds on one split, so its validation images are unseen by all of them."""
    return cfg.seed if cfg.split_seed is None else cfg.split_seed


def split_of(cfg: TrainConfig) -> tuple:
    """What decides which images a run trains on and which validate it: runs that share it
    (an ensemble's members, a teacher and its student) never saw each other's validation."""
    return cfg.dataset, cfg.limit, cfg.val_split, validation_seed(cfg)

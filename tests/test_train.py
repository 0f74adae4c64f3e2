"""Training smoke runs on a few hundred images: artifacts, evaluation, seeds, resume, Ctrl-C."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from digit_recognizer import TrainConfig, compare_runs, evaluate_run, train_model
from digit_recognizer.compare import paired_with_best
from digit_recognizer.data import load_dataset
from digit_recognizer.errors import DigitsError

RUN_FILES = ["model.keras", "model.h5", "last.keras", "history.json", "config.json", "train.log"]
REPORT_FILES = ["metrics.json", "classification_report.txt"]
FIGURES = ["confusion_matrix.png", "curves.png", "samples.png", "misclassified.png"]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, mnist_path):
    """One-epoch MLP and CNN runs on 500 images, evaluated."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("mlp", "cnn"):
        cfg = TrainConfig(model=name, epochs=1, limit=500, data_dir=str(mnist_path))
        train_model(cfg, root / name, verbose=0)
        evaluate_run(root / name)
    return root


def test_training_writes_every_artifact(smoke_runs):
    run = smoke_runs / "cnn"
    for name in RUN_FILES + REPORT_FILES + FIGURES:
        assert (run / name).is_file(), name
    for name in FIGURES:
        with Image.open(run / name) as image:
            assert image.size[0] > 200
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 42 and config["config"]["batch_size"] == 128
    assert config["versions"]["keras"].startswith("3.")
    assert len(config["data"]["sha256"]) == 4 and config["data"]["train"] == 450
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_images"] == 500 and len(metrics["per_class"]) == 10
    assert sum(map(sum, metrics["confusion_matrix"])) == 500
    right = sum(metrics["confusion_matrix"][d][d] for d in range(10))
    assert len(metrics["misread"]) == 500 - right  # by index, for paired comparisons
    assert "macro avg" in (run / "classification_report.txt").read_text()
    # The .h5 export (the seed's deployment format) holds the same model.
    h5, best = (
        keras.models.load_model(run / "model.h5"),
        keras.models.load_model(run / "model.keras"),
    )
    x = np.zeros((1, 28, 28, 1), "float32")
    assert np.allclose(h5(x), best(x), atol=1e-6)


def test_compare_writes_table_and_figure(smoke_runs, tmp_path):
    rows, report = compare_runs([smoke_runs / "mlp", smoke_runs / "cnn"], tmp_path)
    text = report.read_text()
    assert "| mlp | mlp | 109,386 |" in text and "| cnn | cnn | 225,034 |" in text
    assert [r.name for r in rows] == ["mlp", "cnn"]
    with Image.open(tmp_path / "comparison.png") as image:
        assert image.size[1] > image.size[0] / 2  # two rows of curves
    # The runs' gap in right answers is the gap in test images only one of them reads.
    (pair,) = paired_with_best([smoke_runs / "mlp", smoke_runs / "cnn"])
    best, other = sorted(rows, key=lambda r: -r.accuracy)
    assert (pair["best"], pair["run"]) == (best.name, other.name)
    gap = round((best.accuracy - other.accuracy) * 500)
    assert pair["only_best"] - pair["only_run"] == gap
    assert 0 < pair["p_value"] <= 1 and "Is the gap chance?" in text


def test_compare_pairs_only_runs_scored_on_the_same_images(smoke_runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(smoke_runs / "cnn", old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["misread"]  # written before runs kept their misread images
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert paired_with_best([smoke_runs / "mlp", old]) == []
    _, report = compare_runs([smoke_runs / "mlp", old], tmp_path)
    assert "Is the gap chance?" not in report.read_text()


def test_compare_rejects_an_unevaluated_folder(tmp_path):
    with pytest.raises(DigitsError, match=r"missing config\.json"):
        compare_runs([tmp_path], tmp_path)


def test_same_seed_same_metrics(tmp_path, mnist_path):
    results = []
    for name in ("a", "b"):
        cfg = TrainConfig(model="cnn", epochs=1, limit=500, seed=1, data_dir=str(mnist_path))
        train_model(cfg, tmp_path / name, verbose=0)
        metrics = evaluate_run(tmp_path / name)
        results.append((metrics.accuracy, metrics.loss, metrics.confusion_matrix))
    assert results[0] == results[1]


def test_accuracy_gate_on_a_small_subset(tmp_path, mnist_path):
    """2,000 images, 5 epochs of batch 32 (measured: 92 %): a broken pipeline cannot pass 90 %."""
    data = load_dataset("mnist", mnist_path, limit=2000)
    cfg = TrainConfig(model="cnn", epochs=5, batch_size=32, limit=2000, data_dir=str(mnist_path))
    train_model(cfg, tmp_path, data=data, verbose=0)
    assert evaluate_run(tmp_path, data=data).accuracy > 0.90


class InterruptAt(keras.callbacks.Callback):
    """Simulates Ctrl-C at the start of a given epoch (0-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_best_model_and_resume_continues(tmp_path, mnist_path, monkeypatch):
    cfg = TrainConfig(model="mlp", epochs=3, limit=300, patience=5, data_dir=str(mnist_path))
    original_fit = keras.Model.fit

    def fit_with_interrupt(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs["callbacks"], InterruptAt(2)]
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_interrupt)
    run = train_model(cfg, tmp_path, verbose=0)
    assert run.interrupted and run.epochs_run == 2
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "model.h5").is_file()

    monkeypatch.setattr(keras.Model, "fit", original_fit)
    resumed = train_model(cfg, tmp_path, resume=True, verbose=0)
    assert not resumed.interrupted and resumed.epochs_run == 3
    assert len(json.loads((tmp_path / "history.json").read_text())["loss"]) == 3


def test_ones_and_sevens_can_turn_less_than_the_other_digits():
    """--flag-rotation: a flagged 1 turned far enough has a 7's bar, so 1s and 7s may turn
    by less than the others. Here they do not turn at all, every other digit does, and each
    image keeps its own target through the shuffle."""
    from digit_recognizer.augment import label_rotated_batches

    labels = np.arange(40) % 10
    images = np.zeros((40, 28, 28, 1), np.float32)
    images[:, 4:24, 13:15] = 255  # an upright bar
    targets = np.eye(40, dtype=np.float32)  # each image's own index
    batches = label_rotated_batches(images, targets, labels, 30.0, 0.0, 40, seed=0)
    turned, index = next(iter(batches))
    for image, k in zip(turned.numpy(), index.numpy().argmax(axis=1), strict=True):
        moved = np.abs(image - images[k]).sum()
        assert (moved > 1.0) == (labels[k] not in (1, 7)), (labels[k], moved)


def test_the_batches_turn_a_digit_exactly_as_kerass_rotation_layer_does(mnist_path):
    """So --flag-rotation 20 would train on the same images as the recipe's own rotation."""
    from digit_recognizer.augment import affine_matrices

    images = load_dataset("mnist", mnist_path).x_test[:16, ..., None].astype(np.float32)
    turn = keras.layers.RandomRotation((15 / 360, 15 / 360), fill_mode="constant")
    by_keras = np.asarray(turn(images, training=True))
    matrices = affine_matrices(np.full(16, np.deg2rad(-15.0), np.float32), 28, 28)
    by_batches = np.asarray(keras.ops.image.affine_transform(images, matrices, "bilinear"))
    assert np.abs(by_keras - images).max() > 100  # it did turn
    np.testing.assert_allclose(by_batches, by_keras, atol=1e-3)


def test_a_run_with_flag_rotation_records_it_and_its_model_leaves_rotation_to_the_batches(
    tmp_path, mnist_path
):
    cfg = TrainConfig(
        model="fast", epochs=1, limit=300, augment=True, rotation=20.0, flag_rotation=5.0,
        data_dir=str(mnist_path),
    )  # fmt: skip
    train_model(cfg, tmp_path / "run", verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert (saved["rotation"], saved["flag_rotation"]) == (20.0, 5.0)
    model = keras.models.load_model(tmp_path / "run" / "last.keras")
    kinds = {type(layer).__name__ for layer in model.get_layer("augmentation").layers}
    assert "RandomRotation" not in kinds and "RandomTranslation" in kinds


def test_refuses_to_overwrite_a_run(tmp_path, mnist_path):
    cfg = TrainConfig(model="mlp", epochs=1, limit=100, data_dir=str(mnist_path))
    train_model(cfg, tmp_path, verbose=0)
    with pytest.raises(DigitsError, match="already holds a run"):
        train_model(cfg, tmp_path, verbose=0)
    with pytest.raises(DigitsError, match="nothing to resume"):
        train_model(cfg, tmp_path / "empty", resume=True, verbose=0)


def test_the_old_recipe_name_seed_is_baseline_and_bad_settings_are_refused(tmp_path):
    from digit_recognizer.config import load_config, recipe_config

    assert recipe_config("seed") == recipe_config("baseline")
    assert recipe_config("seed").recipe == "baseline"
    for bad in (
        {"epochs": 0},
        {"val_split": 1.5},
        {"learning_rate": -1.0},
        {"synth_shape": 0.5},
        {"flag_rotation": -5.0},
    ):
        with pytest.raises(DigitsError, match="invalid training settings"):
            recipe_config("baseline", **bad)
    with pytest.raises(DigitsError, match="unknown recipe 'turbo'"):
        recipe_config("turbo")
    # A run folder saved under the old name loads as `baseline`; unknown old keys are ignored.
    saved = {"config": {"recipe": "seed", "model": "mlp", "a_setting_since_removed": 1}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert load_config(tmp_path) == recipe_config("baseline", model="mlp")


def test_a_student_learns_half_from_the_labels_half_from_a_teacher_on_its_split(
    tmp_path, mnist_path
):
    """Distillation targets: the label's half plus the teacher's probabilities, summing to 1;
    a teacher trained on another validation split is refused (its validation images would
    be the student's training images)."""
    from dataclasses import replace

    from digit_recognizer.train import _distilled_targets

    teacher = TrainConfig(model="mlp", epochs=1, limit=300, data_dir=str(mnist_path))
    train_model(teacher, tmp_path / "teacher", verbose=0)
    student = replace(teacher, teacher=str(tmp_path / "teacher"))
    data = load_dataset("mnist", mnist_path, limit=300)
    images, labels = data.x_train[:50], data.y_train[:50]
    targets = _distilled_targets(student, images, labels)
    assert targets.shape == (50, 10) and np.allclose(targets.sum(axis=1), 1, atol=1e-5)
    assert (targets[np.arange(50), labels] >= 0.5).all() and (targets.max(axis=1) < 1).all()
    run = train_model(student, tmp_path / "student", verbose=0)
    assert run.config.teacher == str(tmp_path / "teacher") and run.epochs_run == 1
    with pytest.raises(DigitsError, match="another split"):
        _distilled_targets(replace(student, seed=7), images, labels)
    # The model card names the teacher by what it is, not by a folder of this machine.
    from digit_recognizer.ensemble import build_ensemble
    from digit_recognizer.export import describe_run

    pair = build_ensemble([tmp_path / "teacher", tmp_path / "student"], tmp_path / "pair")
    assert describe_run(pair) == (
        "the average of 2 `mlp` networks (recipe baseline, 1 epoch, seeds 42, 42) trained on the "
        "same data"
    )
    assert describe_run(tmp_path / "gone") == "gone"


def test_a_run_can_start_from_another_runs_trained_network(tmp_path, mnist_path):
    """`init_from`: training goes on from another run's network (here so slowly that it
    keeps its answers, where a new network would answer at random); a run of another model
    or split is refused in one line."""
    from dataclasses import replace

    from digit_recognizer.models import inference_model, load_model

    first = TrainConfig(model="mlp", epochs=2, limit=500, data_dir=str(mnist_path))
    train_model(first, tmp_path / "first", verbose=0)
    further = replace(first, init_from=str(tmp_path / "first"), epochs=1, learning_rate=1e-9)
    fresh = replace(first, epochs=1, learning_rate=1e-9, seed=42)
    for name, cfg in (("further", further), ("fresh", fresh)):
        train_model(cfg, tmp_path / name, verbose=0)
    x = load_dataset("mnist", mnist_path, limit=500).x_test[..., None].astype("float32")
    answers = {
        name: inference_model(load_model(tmp_path / name / "model.keras")).predict(x, verbose=0)
        for name in ("first", "further", "fresh")
    }
    same = {k: np.mean(answers[k].argmax(1) == answers["first"].argmax(1)) for k in answers}
    assert same["further"] > 0.99 and same["fresh"] < 0.5, same
    saved = json.loads((tmp_path / "further" / "config.json").read_text())
    assert saved["config"]["init_from"] == str(tmp_path / "first")
    from digit_recognizer.export import model_card

    onnx = tmp_path / "further" / "model.onnx"
    onnx.write_bytes(b"stand-in: only its checksum is read")
    card = model_card(tmp_path / "further", onnx, 0.0)  # names the run, not this machine's folder
    assert card["training"]["init_from"] == "a `mlp` network (recipe baseline, seed 42)"
    with pytest.raises(DigitsError, match="trained another model"):
        train_model(replace(further, model="cnn"), tmp_path / "cnn", verbose=0)
    with pytest.raises(DigitsError, match="another split"):
        train_model(replace(further, seed=7), tmp_path / "split", verbose=0)
    (tmp_path / "first" / "model.keras").unlink()
    with pytest.raises(DigitsError, match=r"has no model\.keras"):
        train_model(further, tmp_path / "unfinished", verbose=0)

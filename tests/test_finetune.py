"""Fine-tuning on corrections, the promotion gates, the model store and its rollback: a
style the model misreads is learnt and promoted, wrong labels are refused, a killed
promotion leaves the store as it was."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, run_digits

from digit_recognizer import feedback as fb
from digit_recognizer import synth
from digit_recognizer.corrections import send_corrections as send
from digit_recognizer.data import load_dataset
from digit_recognizer.errors import DigitsError
from digit_recognizer.finetune import FinetuneConfig, keras_from_onnx, select
from digit_recognizer.model_store import ModelStore
from digit_recognizer.paired import mcnemar_p_value
from digit_recognizer.predict import DEFAULT_MODEL, Recognizer, card_path
from digit_recognizer.promote import promote

# The digit model trained on MNIST alone, which reads a flagged 1 as 7 (16 % of the held-out
# styles' flagged 1s right): a style to learn whatever model ships.
MNIST_ONLY = REPO / "tests" / "data" / "mnist_only_model.onnx"


def flagged_ones(count: int, hands: tuple[str, ...], seed: int) -> np.ndarray:
    """1s with a long flag, which MNIST hardly has."""
    return synth.allograph_views(1, "flag", count, hands, seed)


def recall_of(model, views: np.ndarray, digit: int) -> float:
    predicted = Recognizer(model).probabilities(views.astype(np.float32)).argmax(1)
    return float(np.mean(predicted == digit))


def recall_of_one(model, views: np.ndarray) -> float:
    return recall_of(model, views, 1)


def test_the_keras_twin_of_the_shipped_model_answers_as_it_does():
    model = keras_from_onnx(DEFAULT_MODEL)  # checks 64 random images itself, to 1e-4
    images = np.random.default_rng(1).uniform(0, 255, (8, 28, 28)).astype(np.float32)
    expected = Recognizer().probabilities(images)
    assert np.abs(np.asarray(model(images[..., None])) - expected).max() < 1e-4
    with pytest.raises(DigitsError, match="cannot fine-tune"):
        keras_from_onnx(DEFAULT_MODEL.with_name("number_model.onnx"))


def stored(k: int, client: str) -> fb.StoredCorrection:
    view = np.zeros((28, 28), np.uint8)
    return fb.StoredCorrection(client, "v", 1, 1, (0.1,) * 10, view, id=k, created=float(k))


def test_each_client_contributes_at_most_its_cap_and_the_split_is_fixed():
    rows = [stored(k, "loud-client" if k < 500 else f"quiet-{k % 5}") for k in range(600)]
    config = FinetuneConfig(per_client=50, holdout=0.25)
    training, held = select(rows, config)
    used = training + held
    assert sum(r.client_id == "loud-client" for r in used) == 50
    assert {r.id for r in used if r.client_id == "loud-client"} == set(range(450, 500))  # newest
    assert 0.15 < len(held) / len(used) < 0.35
    assert select(rows, config) == (training, held)  # the same rows stay out every time
    assert not {r.id for r in training} & {r.id for r in held}


@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    """300 corrections of flagged 1s (training hands) from 10 clients, fine-tuned with the
    CLI from the MNIST-only model, served as version 1: the run folder, the database URL and
    the store folder."""
    root = tmp_path_factory.mktemp("finetune")
    ModelStore(root / "models").add(MNIST_ONLY, json.loads(card_path(MNIST_ONLY).read_text()))
    url = f"sqlite:///{root / 'feedback.sqlite'}"
    send(fb.open_store(url), flagged_ones(300, synth.TRAIN_HANDS, seed=1), np.ones(300, int))
    result = run_digits("finetune", "--db", url, "--out", str(root / "run"),
                        "--store", str(root / "models"), timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root / "run", url, root / "models"


def test_a_misread_style_is_learnt_and_promoted_through_every_gate(style_run):
    run, url, models = style_run
    held_out_style = flagged_ones(200, synth.HELD_OUT_HANDS, seed=2)  # hands never sent
    before, after = recall_of_one(MNIST_ONLY, held_out_style), recall_of_one(run, held_out_style)
    assert after - before >= 0.20, (before, after)
    result = run_digits("promote", str(run), "--db", url, "--store", str(models), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Promoted: version 2" in result.stdout and "NO" not in result.stdout
    store = ModelStore(models)
    assert store.current() == 2 and Recognizer(store.current_model()).version == (
        Recognizer(run / "model.onnx").version
    )
    card = json.loads((models / "versions" / "2" / "model_card.json").read_text())
    assert card["store_version"] == 2 and all(g["passed"] for g in card["gates"])
    assert "McNemar" in result.stdout
    back = run_digits("rollback", "--store", str(models))
    assert back.returncode == 0 and "Version 1 serves again" in back.stdout
    assert Recognizer(store.current_model()).version == Recognizer(MNIST_ONLY).version
    assert run_digits("rollback", "--store", str(models)).returncode == 0  # the shipped model
    assert store.current_model() == DEFAULT_MODEL
    again = run_digits("rollback", "--store", str(models))
    assert again.returncode == 1 and "nothing to roll back" in again.stderr


def test_the_shipped_model_is_read_back_and_fine_tuned_like_any_network(tmp_path):
    """It averages two networks' logits in one plain graph (ensemble.merge_models), which the
    corrections loop reads back and trains; a short run keeps it a working digit model."""
    store = fb.open_store(f"sqlite:///{tmp_path / 'feedback.sqlite'}")
    send(store, flagged_ones(40, synth.TRAIN_HANDS, seed=4), np.ones(40, int))
    from digit_recognizer.finetune import finetune

    finetune(FinetuneConfig(epochs=1), store, tmp_path / "run", DEFAULT_MODEL)
    views = synth.allograph_views(7, "plain", 50, synth.TRAIN_HANDS, seed=5)
    assert recall_of(tmp_path / "run" / "model.onnx", views, 7) >= 0.9


def test_deliberately_wrong_labels_are_refused_by_the_gates(tmp_path):
    images, labels = synth.training_set(
        synth.SynthConfig(count=300, hands=synth.TRAIN_HANDS, seed=3)
    )
    views, labels = synth.preprocessed_views(images, labels)
    store = fb.open_store(f"sqlite:///{tmp_path / 'feedback.sqlite'}")
    send(store, views, (labels + 1) % 10)  # every digit called the next one
    from digit_recognizer.finetune import finetune

    finetune(FinetuneConfig(), store, tmp_path / "run", DEFAULT_MODEL)
    models = ModelStore(tmp_path / "models")
    gates, version = promote(tmp_path / "run", models, store, REPO / "data" / "handwriting")
    assert version is None and not all(g.passed for g in gates)
    assert models.history() == [0] and not (tmp_path / "models" / "current.json").exists()
    # Each image-level gate says which images only one model reads right: its two
    # accuracies differ by exactly those, and its p-value is McNemar's on them.
    mnist, corruption = gates[0], gates[1]
    tested = len(load_dataset("mnist").y_test)
    moved = (mnist.only_candidate - mnist.only_current) / tested
    assert abs((mnist.candidate - mnist.current) - moved) < 1e-9
    assert mnist.p_value == mcnemar_p_value(mnist.only_current, mnist.only_candidate)
    assert corruption.p_value is None  # a mean over corruptions, not images


def test_a_finetune_or_promotion_killed_at_any_moment_leaves_the_store_as_it_was(
    style_run, tmp_path
):
    run, url, _ = style_run
    models = ModelStore(tmp_path / "models")
    models.add(DEFAULT_MODEL, {"note": "a first version"})
    pointer = models.pointer.read_bytes()
    store = ("--db", url, "--store", str(models.root))
    commands = [("finetune", "--out", str(tmp_path / "killed-run"), *store)]
    commands += [("promote", str(run), *store)] * 3
    for command, delay in zip(commands, (3.0, 0.5, 2.0, 4.0), strict=True):
        process = subprocess.Popen(
            [sys.executable, "-m", "digit_recognizer", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert models.pointer.read_bytes() == pointer
        assert models.history() == [0, 1] and models.current_model().is_file()
    assert not (tmp_path / "killed-run" / "finetune.json").exists()  # an incomplete run


def test_a_crash_between_the_version_folder_and_the_pointer_changes_nothing(tmp_path, monkeypatch):
    import digit_recognizer.model_store as ms

    models = ModelStore(tmp_path)
    models.add(DEFAULT_MODEL, {})
    pointer = models.pointer.read_bytes()

    def crash(path, obj):
        if path == models.pointer:  # as if killed after the version folder's rename
            raise KeyboardInterrupt
        return real_write_json(path, obj)

    real_write_json = ms.write_json
    with monkeypatch.context() as patched:
        patched.setattr(ms, "write_json", crash)
        with pytest.raises(KeyboardInterrupt):
            models.add(DEFAULT_MODEL, {"attempt": "killed"})
    assert models.pointer.read_bytes() == pointer and models.versions() == [0, 1]
    assert (tmp_path / "versions" / "2" / "model.onnx").is_file()  # unnamed: ignored
    assert models.add(DEFAULT_MODEL, {"attempt": "again"}) == 2  # the orphan is replaced
    assert models.history() == [0, 1, 2]


def test_a_pointer_that_is_not_one_is_a_clear_error(tmp_path):
    models = ModelStore(tmp_path)
    models.pointer.write_text("{broken")
    with pytest.raises(DigitsError, match="not a model store pointer"):
        models.current()
    models.pointer.write_text('{"history": [0, 7], "versions": [0, 7]}')
    with pytest.raises(DigitsError, match="no version 7"):
        models.current_model()

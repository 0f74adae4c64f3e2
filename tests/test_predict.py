"""Reading digits with the shipped ONNX model: MNIST, the handwriting set, rows, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import drawn_large
from conftest import run_digits as digits
from PIL import Image

from digit_recognizer.errors import DigitsError
from digit_recognizer.predict import (
    DEFAULT_MODEL,
    Recognizer,
    apply_temperature,
    card_path,
    resolve_model,
)

REPO = Path(__file__).resolve().parents[1]
HANDWRITING = REPO / "data" / "handwriting"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


def test_shipped_model_and_card_are_in_the_package(recognizer):
    assert DEFAULT_MODEL.is_file() and recognizer.model_path == DEFAULT_MODEL
    card = recognizer.card
    # Two `deep48` networks in one (ensemble.merge_models), each block of weights its own.
    assert card["test_accuracy"] > 0.99 and card["parameters"] == 932_170
    assert "2 `deep48` networks (recipe robust" in card["training"]["ensemble"]
    assert card["training"]["augment"] is True and card["data"]["dataset"] == "mnist"
    assert card["training"]["synth"] > 0 and card["data"]["generated"]["train"]["images"]
    assert card["handwriting"]["accuracy_with_preprocessing"] >= 0.95
    # Calibrated in the file itself: nothing to apply after ONNX Runtime.
    assert card["calibration"]["in_model"] is True and recognizer.temperature == 1.0
    assert "source" not in card["data"]  # a local folder means nothing on another machine
    assert card["training_data"] and card["held_out"]


def test_no_held_out_style_trained_the_shipped_model(recognizer):
    """The generator's held-out styles score the model; none of them may have trained it."""
    from digit_recognizer import synth
    from digit_recognizer.export import generated_images

    generated = recognizer.card["data"].get("generated") or {}  # None: MNIST alone trained it
    for split, settings in generated.items():
        if split == "form_scans":  # scans again digits of the entries above: no hands of its own
            continue
        hands = {settings["hand"]["name"]} if split == "scans" else set(settings["hands"])
        assert hands and hands <= {*synth.TRAIN_HANDS, synth.MNIST_SCAN.name}
        assert not hands & set(synth.HELD_OUT_HANDS)
    added = generated_images(generated, "train")
    assert recognizer.card["training_data"][0].endswith(f"{added} generated")


def test_unsure_answers_name_the_runner_up(recognizer):
    """The margin comes from the card (chosen on validation); an answer closer than it is
    unsure, one clearer than it is not."""
    margin = recognizer.card["calibration"]["unsure"]["margin"]
    assert 0 < margin < 1 and recognizer.unsure_margin == margin
    view = np.zeros((28, 28), np.float32)
    close = np.array([0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5 - margin / 2, 0.0, 0.0]) + margin / 20
    clear = np.array([0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0])
    unsure, sure = recognizer._prediction(view, close), recognizer._prediction(view, clear)
    assert unsure.unsure and unsure.digit == 1 and unsure.runner_up == 7
    assert not sure.unsure and sure.as_dict()["runner_up"] == 7


def test_mnist_through_preprocessing(recognizer, small_mnist):
    images, labels = small_mnist.x_test[:300], small_mnist.y_test[:300]
    hits = [
        recognizer.read(x.astype(np.float32)).digit == y
        for x, y in zip(images, labels, strict=True)
    ]
    assert np.mean(hits) > 0.97


@pytest.mark.parametrize("size", [280, 504])
def test_large_bold_drawings_read_as_well_as_mnist(recognizer, small_mnist, size):
    # MNIST digits drawn to fill a canvas or a scan, strokes size/10 wide. A fixed 40 px
    # background window took such strokes for paper: 96 % at 280 px and 89 % at 504.
    images, labels = small_mnist.x_test[:300], small_mnist.y_test[:300]
    hits = [
        recognizer.read(drawn_large(digit, size)).digit == label
        for digit, label in zip(images, labels, strict=True)
    ]
    assert np.mean(hits) > 0.97


def test_handwriting_set_accuracy_and_what_preprocessing_buys():
    from digit_recognizer.image_folder import evaluate_images

    with_pre = evaluate_images(HANDWRITING, preprocessing=True)
    without = evaluate_images(HANDWRITING, preprocessing=False)
    assert with_pre["images"] == 660 and len(with_pre["per_source"]) == 19
    assert with_pre["accuracy"] >= 0.97
    # The shipped model's augmentation makes it fairly robust even to unprocessed photos
    # (78 %), yet preprocessing still buys over 20 points.
    assert with_pre["accuracy"] > without["accuracy"] + 0.15
    # "unsure" means something: it is said of far more of the errors than of the right answers
    unsure = with_pre["unsure"]
    assert unsure["wrong"] == sum(m["unsure"] for m in with_pre["mistakes"])
    wrong = with_pre["images"] - with_pre["correct"]
    assert unsure["wrong"] / wrong > 5 * unsure["right"] / with_pre["correct"]


def test_reads_a_row_of_digits(recognizer, small_mnist):
    picks = [np.flatnonzero(small_mnist.y_test == d)[1] for d in (2, 0, 2, 5)]
    row = np.full((100, 430), 250.0, np.float32)
    for k, index in enumerate(picks):
        big = np.asarray(Image.fromarray(small_mnist.x_test[index]).resize((84, 84)), np.float32)
        row[8:92, 10 + 105 * k : 94 + 105 * k] -= big * 0.9
    image = Image.fromarray(np.clip(row, 0, 255).astype(np.uint8))
    assert "".join(str(p.digit) for p in recognizer.read_row(image)) == "2025"


def test_model_resolution_errors(tmp_path):
    with pytest.raises(DigitsError, match="run `digits export"):
        resolve_model(tmp_path / "model.keras")
    with pytest.raises(DigitsError, match="not found"):
        resolve_model(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(DigitsError, match="not a loadable ONNX model"):
        Recognizer(tmp_path / "bad.onnx")


def test_export_matches_keras(tmp_path, mnist_path):
    import keras

    from digit_recognizer import TrainConfig, train_model
    from digit_recognizer.export import export_onnx

    cfg = TrainConfig(model="cnn", epochs=1, limit=300, augment=True, data_dir=str(mnist_path))
    train_model(cfg, tmp_path, verbose=0)
    onnx_path, card = export_onnx(tmp_path)
    assert card["onnx_max_abs_diff_vs_keras"] <= 1e-4
    from digit_recognizer.data import load_dataset

    x = load_dataset("mnist", mnist_path, limit=64).x_test.astype(np.float32)
    model = keras.models.load_model(tmp_path / "model.keras")
    expected = np.asarray(model(x[..., None], training=False))
    assert np.abs(Recognizer(onnx_path).probabilities(x) - expected).max() <= 1e-4
    # Flatten's run-time shape arithmetic and its Transpose are gone from the graph.
    operations = {node.op_type for node in onnx.load(str(onnx_path)).graph.node}
    assert operations == {"Reshape", "Conv", "Relu", "MaxPool", "MatMul", "Add", "Softmax"}


def test_export_folds_the_fitted_temperature_into_the_last_layer(tmp_path, mnist_path):
    import keras

    from digit_recognizer import TrainConfig, train_model
    from digit_recognizer.artifacts import write_json
    from digit_recognizer.data import load_dataset
    from digit_recognizer.export import export_onnx

    cfg = TrainConfig(model="mlp", epochs=1, limit=300, data_dir=str(mnist_path))
    train_model(cfg, tmp_path, verbose=0)
    calibration = {"temperature": 0.7, "fitted_on": "validation", "test_ece": 0.02}
    write_json(tmp_path / "calibration.json", {**calibration, "test_ece_calibrated": 0.01})
    onnx_path, card = export_onnx(tmp_path)
    assert card["calibration"]["in_model"] is True and "temperature 0.7" in card["output"]
    x = load_dataset("mnist", mnist_path, limit=64).x_test.astype(np.float32)
    model = keras.models.load_model(tmp_path / "model.keras")
    expected = apply_temperature(np.asarray(model(x[..., None], training=False)), 0.7)
    recognizer = Recognizer(onnx_path)
    assert recognizer.temperature == 1.0  # not applied twice
    assert np.abs(recognizer.probabilities(x) - expected).max() <= 1e-4
    # A card from before the fold: the temperature is applied after the model.
    card["calibration"].pop("in_model")
    write_json(card_path(onnx_path), card)
    assert Recognizer(onnx_path).temperature == 0.7


def test_temperature_folds_into_a_bias_free_dense_and_stays_out_of_an_ensemble_mean():
    from onnx import TensorProto, helper, numpy_helper

    from digit_recognizer.fold import fold_temperature

    def graph_model(node, inputs, constants=()):
        output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 10])
        graph = helper.make_graph([node], "g", inputs, [output], initializer=list(constants))
        return helper.make_model(graph)

    # Untrained Dense layers export without their (zero) bias: Softmax(x @ W).
    features = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    weights = np.arange(40, dtype=np.float32).reshape(4, 10)
    dense = graph_model(
        helper.make_node("MatMul", ["x", "W"], ["z"]), [features],
        [numpy_helper.from_array(weights, "W")],
    )  # fmt: skip
    dense.graph.node.append(helper.make_node("Softmax", ["z"], ["out"]))
    assert fold_temperature(dense, 0.5) is True
    assert np.array_equal(numpy_helper.to_array(dense.graph.initializer[0]), weights * 2)
    # An ensemble ends in a mean of probabilities: no logits to scale.
    probabilities = helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 10])
    mean = graph_model(helper.make_node("Mean", ["p", "p"], ["out"]), [probabilities])
    before = mean.SerializeToString()
    assert fold_temperature(mean, 0.7) is False and mean.SerializeToString() == before


def test_predict_command_files_folders_and_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "README.md").write_text("a folder's non-images are skipped")
    for path in sorted(HANDWRITING.glob("7_*"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    views = tmp_path / "views"
    result = digits("predict", str(folder), str(tmp_path / "notes.txt"), "--top-k", "2",
                    "--show", str(views))  # fmt: skip
    assert result.returncode == 1  # one file failed...
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3  # ...and the others went on
    assert all(line.split("\t")[1] == "7" for line in lines)
    assert (
        result.stderr.strip()
        == f"{tmp_path / 'notes.txt'}: error: not a readable image (unknown format)"
    )
    assert len(list(views.glob("*_28x28.png"))) == 3


def test_predict_json_lines():
    path = sorted(HANDWRITING.glob("4_*"))[0]
    result = digits("predict", str(path), "--json")
    record = json.loads(result.stdout)
    assert result.returncode == 0 and record["digit"] == 4 and len(record["probabilities"]) == 10


def test_predict_command_imports_only_what_reading_needs():
    """A cold `digits predict` pays for every import: Rich (only for tables and logs), numpy.ma
    (pulled in by np.median and np.percentile) and TensorFlow cost it 0.1-3.5 s."""
    photo = sorted(HANDWRITING.glob("0_*.jpg"))[0]  # uneven paper: the percentile's slow path
    code = (
        "import sys; from digit_recognizer.cli import app; "  # main() would end the process
        f"sys.argv = ['digits', 'predict', {str(photo)!r}]\n"
        "try: app()\nexcept SystemExit: pass\n"
        "heavy = {'rich', 'numpy.ma', 'tensorflow', 'keras', 'scipy'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t")[1] == "0" and lines[-1] == "[]", result.stdout

"""Corruptions, calibration (ECE, temperature scaling) and ensembles."""

from __future__ import annotations

import json

import keras
import numpy as np
import onnx
import pytest
from conftest import run_digits

from digit_recognizer import TrainConfig, evaluate_run, train_model
from digit_recognizer.augment import (
    RandomWarp,
    affine_field,
    augmentation,
    warp,
    with_augmentation,
)
from digit_recognizer.ensemble import average_models, build_ensemble, merge_models
from digit_recognizer.errors import DigitsError
from digit_recognizer.evaluate import expected_calibration_error, fit_temperature
from digit_recognizer.export import export_onnx
from digit_recognizer.finetune import keras_from_onnx
from digit_recognizer.models import build_model
from digit_recognizer.predict import apply_temperature
from digit_recognizer.robustness import CORRUPTIONS, corrupt, robustness


@pytest.fixture(scope="module")
def digits(small_mnist):
    return small_mnist.x_test[:50]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_deterministic_and_change_the_image(name, digits):
    for severity in (1, 2, 3):
        a, b = corrupt(name, digits, severity, seed=7), corrupt(name, digits, severity, seed=7)
        assert a.shape == digits.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert np.abs(a.astype(int) - digits).mean() > 0.5, (name, severity)


def test_severity_grows(digits):
    for name in ("gaussian noise (sigma)", "contrast (kept)", "thicken (px)", "blur (sigma px)"):
        change = [np.abs(corrupt(name, digits, s).astype(int) - digits).mean() for s in (1, 2, 3)]
        assert change[0] < change[1] < change[2], (name, change)


def test_corruptions_do_what_they_say(digits):
    ink = (digits > 127).sum()
    assert (corrupt("thicken (px)", digits, 1) > 127).sum() > ink
    assert (corrupt("thin (px)", digits, 1) > 127).sum() < ink
    assert np.array_equal(corrupt("inverted polarity", digits, 1), 255 - digits)
    faint = corrupt("contrast (kept)", digits, 3)
    assert faint.max() - faint.min() <= 0.15 * 255 + 1


def test_robustness_table_for_a_perfect_and_a_constant_model(digits, small_mnist):
    labels = small_mnist.y_test[:50]
    lookup = {d.tobytes(): y for d, y in zip(digits.astype(np.float32), labels, strict=True)}

    def oracle(batch):  # knows only the clean images: exactly 100 % on them
        out = np.zeros((len(batch), 10))
        for k, image in enumerate(batch):
            out[k, lookup.get(image.tobytes(), 0)] = 1
        return out

    result = robustness(oracle, digits, labels)
    assert result["clean"] == 1.0 and set(result["corruptions"]) == set(CORRUPTIONS)
    assert result["mean_corrupted"] < 1.0
    always_one = robustness(lambda b: np.tile(np.eye(10)[1], (len(b), 1)), digits, labels)
    assert always_one["clean"] == pytest.approx(np.mean(labels == 1))


def test_ece_on_a_hand_made_example():
    # 4 images at confidence 0.9 (3 right) and 4 at confidence 0.6 (all right):
    # ECE = 0.5 * |0.75 - 0.9| + 0.5 * |1.0 - 0.6| = 0.075 + 0.2 = 0.275
    probabilities = np.zeros((8, 10))
    probabilities[:4, 0], probabilities[:4, 1] = 0.9, 0.1
    probabilities[4:, 0], probabilities[4:, 1] = 0.6, 0.4
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 0])
    ece, bins = expected_calibration_error(probabilities, labels, bins=15)
    assert ece == pytest.approx(0.275)
    assert sum(b["count"] for b in bins) == 8


def test_temperature_recovers_overconfidence_and_keeps_predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 10))
    labels = np.array([rng.choice(10, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    overconfident = apply_temperature(true, 1 / 3)  # sharpened 3x
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    calibrated = apply_temperature(overconfident, temperature)
    assert np.array_equal(calibrated.argmax(1), overconfident.argmax(1))
    assert (
        expected_calibration_error(calibrated, labels)[0]
        < expected_calibration_error(overconfident, labels)[0]
    )


@pytest.mark.parametrize("temperature", [0.05, 0.5, 0.99, 3.0])
def test_temperature_is_softmax_of_log_probabilities_over_t(temperature):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (50, 10))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    scaled_logits = np.log(probabilities.astype(np.float64)) / temperature
    expected = np.exp(scaled_logits - scaled_logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(apply_temperature(probabilities, temperature), expected, atol=1e-6)


def test_ensemble_of_one_equals_the_model_and_averages_two():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 28, 28, 1)).astype(np.float32)
    a, b = build_model("cnn"), build_model("mlp")
    assert np.allclose(average_models([a])(x), a(x, training=False), atol=1e-6)
    expected = (np.asarray(a(x, training=False)) + np.asarray(b(x, training=False))) / 2
    assert np.allclose(average_models([a, b])(x), expected, atol=1e-6)


@pytest.mark.parametrize("names", [["deep48"] * 3, ["cnn"] * 3, ["mlp"] * 2], ids=str)
def test_merged_members_answer_with_the_mean_of_their_logits(names):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 28, 28, 1)).astype(np.float32)
    members = [build_model(name) for name in names]
    for member in members:  # BatchNorm statistics a trained model would have: not 0 and 1
        for layer in member.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.set_weights([rng.uniform(0.5, 2, w.shape) for w in layer.get_weights()])
    merged = merge_models(members)
    log_probabilities = [np.log(np.asarray(m(x, training=False), np.float64)) for m in members]
    mean = np.mean(log_probabilities, axis=0)  # the logits' mean, less a constant per image
    expected = np.exp(mean - mean.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(merged(x), expected, atol=1e-5)
    assert np.allclose(merge_models(members[:1])(x), members[0](x, training=False), atol=1e-5)
    assert isinstance(merged, keras.Sequential) and len(merged.layers) < len(members[0].layers)


def test_only_members_of_one_plain_architecture_merge():
    with pytest.raises(DigitsError, match="one plain Sequential architecture"):
        merge_models([build_model("cnn"), build_model("mlp")])
    with pytest.raises(DigitsError, match="one plain Sequential architecture"):
        merge_models([build_model("deep"), build_model("deep48")])  # 64 and 48 channels
    with pytest.raises(DigitsError, match="one plain Sequential architecture"):
        merge_models([build_model("vgg")] * 2)  # its BatchNorm, before a ReLU, does not fold


def test_augmentation_is_off_at_inference():
    model = with_augmentation(build_model("cnn"), augmentation(30, 0.2, 0.2, seed=0))
    x = np.random.default_rng(1).uniform(0, 255, (4, 28, 28, 1)).astype(np.float32)
    assert np.allclose(model(x, training=False), model.layers[1](x, training=False), atol=1e-6)
    assert not np.allclose(model.layers[0](x, training=True), x)  # it does act in training


def test_stroke_width_layer_thickens_and_thins_and_is_seeded():
    from digit_recognizer.augment import RandomStrokeWidth

    x = np.zeros((256, 28, 28, 1), np.float32)
    x[:, 8:20, 12:15] = 255.0  # a bar 3 px wide
    out = np.asarray(RandomStrokeWidth(1.0, seed=3)(x, training=True))
    ink = (out > 127).sum(axis=(1, 2, 3))
    before = (x[0] > 127).sum()
    assert (ink > before).any() and (ink < before).any()  # some thicker, some thinner
    assert set(np.unique(ink)) <= {12 * 5 + 2 * 5, 12 * 7 + 4 * 7, 11 * 2, 10 * 1}
    again = np.asarray(RandomStrokeWidth(1.0, seed=3)(x, training=True))
    assert np.array_equal(out, again)
    assert np.array_equal(RandomStrokeWidth(0.0, seed=3)(x, training=True), x)
    assert np.array_equal(RandomStrokeWidth(1.0, seed=3)(x, training=False), x)


def test_noise_layer_varies_its_level_per_image_within_range():
    from digit_recognizer.augment import RandomNoise

    x = np.full((64, 28, 28, 1), 128.0, np.float32)
    out = np.asarray(RandomNoise(0.3, seed=0)(x, training=True))
    spread = (out - x).std(axis=(1, 2, 3))
    assert out.min() >= 0 and out.max() <= 255
    assert spread.max() > 4 * spread.min() and spread.max() < 0.3 * 255 * 1.1
    assert np.array_equal(RandomNoise(0.3, seed=0)(x, training=False), x)


def test_warp_matches_scipy_bilinear_resampling():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (3, 28, 28, 1)).astype(np.float32)
    shift = rng.normal(0, 3, (3, 28, 28, 2)).astype(np.float32)  # some samples fall outside
    rows, cols = np.mgrid[0:28, 0:28]
    expected = [
        ndimage.map_coordinates(image[..., 0], [rows + s[..., 0], cols + s[..., 1]], order=1,
                                mode="grid-constant", cval=0.0)
        for image, s in zip(x, shift, strict=True)
    ]  # fmt: skip
    assert np.allclose(np.asarray(warp(x, shift))[..., 0], expected, atol=1e-3)
    assert np.allclose(warp(x, np.zeros_like(shift)), x)


def test_random_warp_is_seeded_smooth_and_off_at_inference(digits):
    x = digits[:32, ..., np.newaxis].astype(np.float32)
    layer = RandomWarp(10, 0.1, 0.1, elastic=34.0, seed=5)
    out = np.asarray(layer(x, training=True))
    assert np.array_equal(out, RandomWarp(10, 0.1, 0.1, elastic=34.0, seed=5)(x, training=True))
    assert np.array_equal(layer(x, training=False), x)
    assert (np.abs(out - x).mean(axis=(1, 2, 3)) > 1.0).all()  # every image changes ...
    # ... but keeps its ink (a warp, not a wipe): local stretching moves it by up to ~40 %
    ink = out.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert 0.85 < np.median(ink) < 1.15 and ((ink > 0.6) & (ink < 1.6)).all()
    field = np.asarray(RandomWarp(0, 0, 0, elastic=34.0, seed=5).elastic_field(8, 28, 28))
    assert 0.5 < field.std() < 3.0  # Simard's strength moves pixels about a pixel or two
    assert np.abs(np.diff(field, axis=1)).mean() < 0.3 * np.abs(field).mean()  # smooth
    weaker = np.asarray(RandomWarp(0, 0, 0, elastic=8.5, seed=5).elastic_field(8, 28, 28))
    assert np.allclose(weaker * 4, field, atol=1e-4)


def test_random_warp_geometry():
    def field(rotation, shift, zoom):
        layer = RandomWarp(rotation, shift, zoom, elastic=0.0, seed=1)
        return np.asarray(affine_field(layer.affine_matrix(64, 28, 28), 28, 28))

    assert np.allclose(field(0, 0, 0), 0, atol=1e-5)
    shifted = field(0, 0.1, 0)  # the same shift for every pixel of an image, up to 2.8 px
    assert np.allclose(shifted, shifted[:, :1, :1], atol=1e-4)
    assert np.abs(shifted).max() <= 2.8 + 1e-4 and np.abs(shifted).max() > 2.0
    rotated = field(30, 0, 0)  # the centre stays, the corners move up to 2 sin(15°) r
    distance = np.hypot(*rotated.transpose(3, 0, 1, 2))
    centre = distance[:, 13:15, 13:15].max()
    corner_radius = np.hypot(13.5, 13.5)
    assert centre < 0.5 and distance.max() <= 2 * np.sin(np.deg2rad(15)) * corner_radius + 1e-3
    zoomed = np.hypot(*field(0, 0, 0.2).transpose(3, 0, 1, 2))  # 1 / 0.8 - 1 = 25 % of r at most
    assert zoomed[:, 13:15, 13:15].max() < 0.25 and zoomed.max() <= 0.25 * corner_radius + 1e-3
    assert zoomed.max() > 0.1 * corner_radius


def test_random_warp_without_elastic_is_one_affine_transform(digits):
    # Without distortion, RandomWarp hands its matrices to Keras's affine_transform (one op)
    # instead of gathering pixels: the same images, the same as `warp` over the field.
    x = digits[..., np.newaxis].astype(np.float32)
    out = np.asarray(RandomWarp(10, 0.1, 0.1, elastic=0.0, seed=3)(x, training=True))
    matrix = RandomWarp(10, 0.1, 0.1, elastic=0.0, seed=3).affine_matrix(len(x), 28, 28)
    assert np.allclose(out, warp(x, affine_field(matrix, 28, 28)), atol=1e-3)
    assert (np.abs(out - x).mean(axis=(1, 2, 3)) > 1.0).mean() > 0.9


def test_one_resampling_keeps_digits_sharper_than_three(digits):
    x = digits[..., np.newaxis].astype(np.float32)
    keras_layers = np.asarray(augmentation(10, 0.1, 0.1, seed=0)(x, training=True))
    one_warp = np.asarray(RandomWarp(10, 0.1, 0.1, elastic=0.0, seed=0)(x, training=True))
    solid = [(v > 200).mean() for v in (x, keras_layers, one_warp)]
    assert solid[0] > solid[2] > solid[1] + 0.01  # clean > one warp > three resamplings


def test_elastic_and_warp_need_augmentation_and_train(tmp_path, mnist_path):
    from digit_recognizer.config import load_config, recipe_config

    with pytest.raises(DigitsError, match="--augment"):
        train_model(TrainConfig(elastic=34.0, limit=100, data_dir=str(mnist_path)), tmp_path)
    with pytest.raises(DigitsError, match="--augment"):
        train_model(TrainConfig(warp=True, limit=100, data_dir=str(mnist_path)), tmp_path)
    with pytest.raises(DigitsError, match="--augment"):
        train_model(TrainConfig(flag_rotation=5.0, limit=100, data_dir=str(mnist_path)), tmp_path)
    assert [type(layer) for layer in augmentation(10, 0.1, 0.1, 0, one_resampling=True).layers] == [
        RandomWarp
    ]
    assert recipe_config("accurate").warp and not recipe_config("robust").warp
    old_run = tmp_path / "before-warp"  # written before --warp existed: three resamplings
    old_run.mkdir()
    old_config = {"config": {"recipe": "accurate", "model": "deep", "augment": True}}
    (old_run / "config.json").write_text(json.dumps(old_config))
    assert load_config(old_run).warp is False
    cfg = recipe_config("fast", augment=True, elastic=34.0, epochs=1, limit=300,
                        data_dir=str(mnist_path))  # fmt: skip
    train_model(cfg, tmp_path / "run", verbose=0)
    trained = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert [type(layer) for layer in trained.layers[0].layers] == [RandomWarp]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["elastic"] == 34


def test_evaluate_writes_calibration_and_ensemble_runs_end_to_end(tmp_path, mnist_path):
    # Two seeds on one validation split: an ensemble's calibration needs images no member saw.
    for name, seed in (("a", 1), ("b", 2), ("other-split", 3)):
        split_seed = None if name == "other-split" else 1
        cfg = TrainConfig(
            model="cnn", epochs=1, limit=400, seed=seed, split_seed=split_seed,
            data_dir=str(mnist_path),
        )  # fmt: skip
        train_model(cfg, tmp_path / name, verbose=0)
    with pytest.raises(DigitsError, match="validation split"):
        build_ensemble([tmp_path / "a", tmp_path / "other-split"], tmp_path / "bad")
    metrics = evaluate_run(tmp_path / "a")
    calibration = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert metrics.temperature == calibration["temperature"] > 0
    assert metrics.ece is not None and (tmp_path / "a" / "reliability.png").is_file()
    build_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "ens")
    ensemble_metrics = evaluate_run(tmp_path / "ens")
    assert ensemble_metrics.test_images == metrics.test_images
    loaded = keras.models.load_model(tmp_path / "ens" / "model.keras")
    assert loaded.count_params() == 2 * 225_034
    # Merged, the pair is one plain network: exported, then read back to fine-tune.
    build_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "merged", merge=True)
    evaluate_run(tmp_path / "merged")
    onnx_path, card = export_onnx(tmp_path / "merged")
    assert "in_model" in card["calibration"]  # a softmax of logits: the temperature folds in
    assert "2 `cnn` networks" in card["training"]["ensemble"]
    nodes = onnx.load(onnx_path).graph.node
    groups = [a.i for n in nodes for a in n.attribute if a.name == "group"]
    assert 2 in groups  # the block-diagonal convolutions, grouped: no zeros multiplied
    assert [n.op_type for n in nodes].count("MatMul") == 3  # the first dense layer in 2 blocks
    keras_from_onnx(onnx_path)  # refuses a graph it cannot read, or one that answers otherwise


def test_strong_augmentation_trains_and_stays_out_of_inference(tmp_path, mnist_path):
    from digit_recognizer.config import recipe_config

    cfg = recipe_config("robust", epochs=1, limit=300, data_dir=str(mnist_path))
    assert cfg.erase and cfg.contrast and cfg.noise and cfg.stroke  # the recipe turns them on
    train_model(cfg, tmp_path, verbose=0)
    trained = keras.models.load_model(tmp_path / "model.keras")  # custom layers load back
    names = [layer.name for layer in trained.layers[0].layers]
    assert any("erasing" in n for n in names) and any("noise" in n for n in names)
    assert any("stroke" in n for n in names)
    deployed = keras.models.load_model(tmp_path / "model.h5")  # inference model only
    assert deployed.count_params() == 235_434 and "augmentation" not in deployed.layers[0].name
    x = np.random.default_rng(2).uniform(0, 255, (4, 28, 28, 1)).astype(np.float32)
    assert np.allclose(trained(x, training=False), deployed(x, training=False), atol=1e-5)
    # A fresh process, which has not imported the layers' module, loads the run too.
    result = run_digits(
        "robustness", str(tmp_path), "--limit", "30", "--out", str(tmp_path / "r"),
        "--data-dir", str(mnist_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def test_leaderboard_groups_seeds(tmp_path, mnist_path):
    from digit_recognizer.compare import leaderboard

    for seed in (1, 2):
        cfg = TrainConfig(model="mlp", epochs=1, limit=200, seed=seed, data_dir=str(mnist_path))
        train_model(cfg, tmp_path / f"mlp-s{seed}", verbose=0)
        evaluate_run(tmp_path / f"mlp-s{seed}")
    text = leaderboard(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| mlp-s")]
    assert len(rows) == 1 and "(2 seeds)" in rows[0] and "mlp-s1, mlp-s2" in rows[0]

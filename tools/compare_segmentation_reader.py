"""The segmentation reader (tools/segmentation_reader.py) against the committed number test
set: fit its candidate model, choose its per-digit bonus, then read data/numbers.

The candidate model learns which cut hypotheses are one whole digit from numbers generated out
of MNIST's first 50,000 training digits and the generator's training hands (a candidate is a
whole digit when its box overlaps a true digit's box by IoU > 0.75). The per-digit bonus is
chosen on numbers built from the last 10,000 training digits. Neither MNIST's test digits nor
the held-out hands are used, so the committed test set stays unseen until it is scored.

  .venv/bin/python tools/compare_segmentation_reader.py [--numbers 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import segmentation_reader as nr

from digit_recognizer import number_data as nd
from digit_recognizer import synth
from digit_recognizer.artifacts import library_versions, write_json
from digit_recognizer.data import load_dataset
from digit_recognizer.errors import NoDigitError
from digit_recognizer.image_folder import score_numbers
from digit_recognizer.predict import Recognizer
from digit_recognizer.preprocess import digit_from_ink

BONUSES = np.round(np.arange(-1.0, 3.01, 0.25), 2)
WHOLE_IOU = 0.75  # a candidate this close to a true digit's box is that digit, whole


def scored_candidates(number: nd.GeneratedNumber, recognizer: Recognizer, cfg: nr.ReaderConfig):
    """Features, whole-digit labels and the pieces the DP needs, for one generated number."""
    line = nr.find_line(number.image.astype(np.float32), cfg.work_height)
    found, cuts, areas = nr.candidates(line, cfg)
    views = np.stack([digit_from_ink(areas[c.blob].ink, c.mask) for c in found])
    probs = recognizer.probabilities(views)
    rows = np.stack([
        nr.features(line, areas[c.blob], cuts[c.blob], c, p)
        for c, p in zip(found, probs, strict=True)
    ])  # fmt: skip
    whole = np.array([
        max(nd.box_iou(nr.box(line, areas[c.blob], c.mask), b) for b in number.boxes) > WHOLE_IOU
        for c in found
    ])  # fmt: skip
    return rows, whole, (found, cuts, probs)


def collect(pool, count: int, seed: int, recognizer, cfg, lengths=(1, 6)):
    rows, labels, readings = [], [], []
    for number in nd.generate(pool, count, lengths, seed=seed):
        try:
            r, whole, pieces = scored_candidates(number, recognizer, cfg)
        except NoDigitError:
            continue
        rows.append(r)
        labels.append(whole)
        readings.append((number.text, pieces, r))
    return np.concatenate(rows), np.concatenate(labels), readings


def main() -> None:
    from sklearn.neural_network import MLPClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=nr.WEIGHTS)
    parser.add_argument("--folder", type=Path, default=Path("data/numbers"))
    args = parser.parse_args()
    data = load_dataset("mnist")
    recognizer = Recognizer()
    cfg = nr.ReaderConfig(weights={})
    mnist = nd.pool_from_mnist(data.x_train[:50000], data.y_train[:50000])
    written = nd.pool_from_synth(synth.TRAIN_HANDS, 3000, args.seed)
    x1, y1, _ = collect(mnist, args.numbers, args.seed, recognizer, cfg)
    x2, y2, _ = collect(written, args.numbers // 3, args.seed + 1, recognizer, cfg)
    x, y = np.concatenate([x1, x2]), np.concatenate([y1, y2])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = MLPClassifier((32,), alpha=1e-3, max_iter=300, random_state=args.seed)
    model.fit((x - mean) / scale, y)
    print(f"candidate model: training accuracy {model.score((x - mean) / scale, y):.1%}")
    weights = {
        "mean": mean.tolist(), "scale": scale.tolist(),
        "hidden": model.coefs_[0].tolist(), "hidden_bias": model.intercepts_[0].tolist(),
        "out": model.coefs_[1][:, 0].tolist(), "out_bias": float(model.intercepts_[1][0]),
    }  # fmt: skip
    print(f"candidates: {len(y)} ({y.mean():.1%} whole digits)")
    validation = nd.pool_from_mnist(data.x_train[50000:], data.y_train[50000:], "mnist-val")
    _, _, readings = collect(validation, 400, args.seed + 2, recognizer, cfg, (4, 4))
    accuracy = {}
    for bonus in BONUSES:
        trial = {**weights, "digit_bonus": float(bonus)}
        right = 0
        for text, (found, cuts, probs), rows in readings:
            chosen = nr.choose(found, cuts, probs, rows, trial)
            right += "".join(str(int(np.argmax(probs[k]))) for k in chosen) == text
        accuracy[float(bonus)] = right / len(readings)
        print(f"bonus {bonus:+.2f}: validation 4-digit numbers {accuracy[float(bonus)]:.1%}")
    best = max(accuracy, key=accuracy.get)
    weights["digit_bonus"] = best
    weights["fitted_on"] = {
        "training": f"{args.numbers} numbers of 1-6 digits from MNIST train[:50000] and "
        f"{args.numbers // 3} from generated training hands {list(synth.TRAIN_HANDS)}",
        "bonus_chosen_on": "400 4-digit numbers from MNIST train[50000:]",
        "validation_accuracy": accuracy[best], "seed": args.seed,
        "features": 29, "versions": library_versions(),
    }  # fmt: skip
    write_json(args.out, weights)
    print(f"digit bonus {best:+.2f} ({accuracy[best]:.1%}); wrote {args.out}")
    score(args.folder, recognizer, nr.ReaderConfig(weights=weights))


def score(folder: Path, recognizer: Recognizer, cfg: nr.ReaderConfig) -> None:
    """Whole-number and per-digit accuracy per subset, as `digits evaluate-numbers` prints."""
    from digit_recognizer.images import load_grey

    report = score_numbers(
        folder,
        read=lambda grey: nr.read_number(grey, recognizer.probabilities, cfg).number,
        load=lambda path: load_grey(path, work_size=1024),
    )
    for subset, tally in report["subsets"].items():
        print(f"{subset}: {tally['numbers']} numbers, {tally['accuracy']:.2%} right, "
              f"digits {tally['digit_accuracy']:.2%}")  # fmt: skip
    print(f"median {report['median_ms']:.1f} ms per number (image decoded beforehand)")


if __name__ == "__main__":
    main()

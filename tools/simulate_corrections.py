"""Fill a feedback store with corrections as people would send them from the page, to try
`digits finetune` and `digits promote` without waiting for real users.

  .venv/bin/python tools/simulate_corrections.py --db sqlite:///runs/feedback.sqlite
  .venv/bin/digits finetune --db sqlite:///runs/feedback.sqlite --out runs/finetune
  .venv/bin/digits promote runs/finetune --db sqlite:///runs/feedback.sqlite

Default: 300 flagged 1s (a style that a model trained on MNIST alone,
tests/data/mnist_only_model.onnx, reads as 7) drawn in the generator's training hands, from 10
clients, labelled 1. `--wrong-labels`: 300 digits of every shape, each labelled as the next
digit (what the gates must refuse). `--score`: the flagged-1 recall of a model on 200 flagged
1s in the held-out hands (which no correction used).
"""

from __future__ import annotations

import argparse

import numpy as np

from digit_recognizer import synth
from digit_recognizer.corrections import send_corrections
from digit_recognizer.feedback import open_store
from digit_recognizer.predict import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--wrong-labels", action="store_true")
    parser.add_argument("--score", metavar="MODEL", help="print a model's flagged-1 recall")
    args = parser.parse_args()
    if args.score:
        views = synth.allograph_views(1, "flag", 200, synth.HELD_OUT_HANDS, seed=2)
        answers = Recognizer(args.score).probabilities(views.astype(np.float32)).argmax(1)
        print(f"{args.score}: flagged 1s in held-out hands read as 1: {np.mean(answers == 1):.2%}")
        return
    if args.wrong_labels:
        config = synth.SynthConfig(count=args.count, hands=synth.TRAIN_HANDS, seed=3)
        views, labels = synth.preprocessed_views(*synth.training_set(config))
        labels = (labels + 1) % 10
    else:
        views = synth.allograph_views(1, "flag", args.count, synth.TRAIN_HANDS, seed=1)
        labels = np.ones(len(views), int)
    store = open_store(args.db)
    send_corrections(store, views, labels, args.clients)
    print(f"{len(views)} corrections from {args.clients} clients sent to {store.display_url}")


if __name__ == "__main__":
    main()

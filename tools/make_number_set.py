"""Write the committed number test set, data/numbers/: handwritten numbers built only from
MNIST's test digits and the generator's held-out hands, so no digit, writer or style in it
ever trains a model or chooses a setting.

  separated  400 four-digit numbers, clear gaps            (MNIST test digits)
  touching   400 four-digit numbers, touching/overlapping  (MNIST test digits)
  lengths    200 numbers of 1-10 digits, either spacing    (MNIST test digits)
  heldout    200 four-digit numbers, either spacing        (held-out hands)

Half are rendered like canvas drawings (PNG), half like photos (JPEG, as cameras save them).
A file's name is the number, the subset and the rendering: `0721_touching-photo_0042.jpg`;
boxes.json holds every digit's box. Run once; the files are committed.

  .venv/bin/python tools/make_number_set.py [--out data/numbers] [--seed 2026]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from PIL import Image

from digit_recognizer import number_data as nd
from digit_recognizer import synth
from digit_recognizer.data import load_dataset

SUBSETS = {  # name: (count, lengths, spacings, pool)
    "separated": (400, (4, 4), ("separated",), "mnist"),
    "touching": (400, (4, 4), ("touching",), "mnist"),
    "lengths": (200, (1, 10), nd.SPACINGS, "mnist"),
    "heldout": (200, (4, 4), nd.SPACINGS, "held-out"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/numbers"))
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    data = load_dataset("mnist")
    pools = {
        "mnist": nd.pool_from_mnist(data.x_test, data.y_test, "mnist-test"),
        "held-out": nd.pool_from_synth(synth.HELD_OUT_HANDS, 3000, args.seed),
    }
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    boxes = {}
    for offset, (subset, (count, lengths, spacings, pool)) in enumerate(SUBSETS.items()):
        numbers = nd.generate(pools[pool], count, lengths, spacings, seed=args.seed + offset)
        for index, number in enumerate(numbers):
            photo = number.render == "photo"
            name = f"{number.text}_{subset}-{number.render}_{index:04d}"
            name += ".jpg" if photo else ".png"
            picture = Image.fromarray(number.image)
            picture.save(args.out / name, quality=90) if photo else picture.save(
                args.out / name, optimize=True
            )
            boxes[name] = [list(box) for box in number.boxes]
    (args.out / "boxes.json").write_text(json.dumps(boxes, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(boxes)} numbers to {args.out}")


if __name__ == "__main__":
    main()

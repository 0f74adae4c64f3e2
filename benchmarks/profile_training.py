"""Where does a training epoch's time go? Profiles `digits train` (baseline and fast recipes)
with pyinstrument, one epoch on 20,000 images, and writes benchmarks/profile_<recipe>.txt.

Run: .venv/bin/python benchmarks/profile_training.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pyinstrument import Profiler

from digit_recognizer.data import load_dataset
from digit_recognizer.train import recipe_config, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=20_000)
    args = parser.parse_args()
    data = load_dataset("mnist", args.data_dir, limit=args.limit)
    for recipe in ("baseline", "fast"):
        cfg = recipe_config(recipe, epochs=2, limit=args.limit)
        with tempfile.TemporaryDirectory() as tmp:
            profiler = Profiler(interval=0.005)
            profiler.start()
            train(cfg, Path(tmp) / recipe, data=data, verbose=0)
            profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        text = text.replace(f"{Path.cwd()}/", "")  # paths relative to the checkout
        path = Path(__file__).parent / f"profile_{recipe}.txt"
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

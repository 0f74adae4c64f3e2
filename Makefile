# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo ship-model ship-number-model compare-number-readers eval-sets test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Train the seed's MLP and CNN on full MNIST, evaluate both, write runs/report.md.
demo: install
	$(BIN)/digits train --model mlp --out runs/mlp --overwrite
	$(BIN)/digits train --model cnn --out runs/cnn --overwrite
	$(BIN)/digits compare runs/mlp runs/cnn --out runs
	@echo "Report: runs/report.md  (figures in runs/mlp, runs/cnn, runs/comparison.png)"

# Rebuild the model that ships: two `robust` networks with generated handwriting, seeds 42
# and 1 on one validation split, merged into one network that averages their logits (about 20
# minutes on 2 cores, twice that on slower hosts); then recalibrate the number reader, which
# uses it, and commit src/digit_recognizer/assets/model.onnx and both model cards.
SHIPPED := --recipe robust --synth 0.25 --synth-shape 0.1 --scans 0.25 --split-seed 42
ship-model: install
	$(BIN)/digits train $(SHIPPED) --seed 42 --out runs/robust-42 --overwrite
	$(BIN)/digits train $(SHIPPED) --seed 1 --out runs/robust-1 --overwrite
	$(BIN)/digits ensemble runs/robust-42 runs/robust-1 --merge --out runs/robust
	$(BIN)/digits export runs/robust --out src/digit_recognizer/assets/model.onnx \
		--handwriting data/handwriting
	$(BIN)/python tools/calibrate_number_reader.py

# Rebuild the number reader that ships (time budgets, not epoch counts, end its two sittings:
# the second grafts its second LSTM) and the context model, which learns from where it places
# digits (about four hours on 2 cores), then commit
# src/digit_recognizer/assets/{number,context}_model.onnx and their cards.
# The committed test set it is scored on, data/numbers, comes from tools/make_number_set.py.
ship-number-model: install
	$(BIN)/python tools/train_number_reader.py --minutes 90 --out runs/numbers
	$(BIN)/python tools/train_number_reader.py --resume runs/numbers/model.keras --grow 96 \
		--minutes 85 --learning-rate 4e-4 --seed 8 --out runs/numbers-grown --ship
	$(BIN)/python tools/train_context_reader.py --epochs 4 --out runs/context
	$(BIN)/python tools/train_context_reader.py --resume runs/context/model.keras --epochs 3 \
		--learning-rate 1e-3 --seed 1 --out runs/context-more --ship
	$(BIN)/python tools/calibrate_number_reader.py
	$(BIN)/digits evaluate-numbers data/numbers

# The segmentation reader the shipped number reader was chosen over, fitted and scored.
compare-number-readers: install
	$(BIN)/python tools/compare_segmentation_reader.py
	$(BIN)/digits evaluate-numbers data/numbers --reader row
	$(BIN)/digits evaluate-numbers data/numbers

# The evaluation sets that are generated rather than committed, into eval-sets/ (ignored).
# The last two need the handwriting fonts that tools/make_handwriting_set.py names.
eval-sets: install
	$(BIN)/python tools/make_eval_sets.py --out eval-sets
	$(BIN)/python tools/make_mnist_canvases.py --size 280 --count 1000 --out eval-sets/canvas280
	$(BIN)/python tools/make_mnist_canvases.py --size 504 --count 1000 --out eval-sets/canvas504
	$(BIN)/python tools/make_handwriting_set.py --out eval-sets/holdout --seed 2027
	$(BIN)/python tools/make_handwriting_set.py --out eval-sets/large --seed 2028 --height 240 512

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs eval-sets test-artifacts .pytest_cache .ruff_cache

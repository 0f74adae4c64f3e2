# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo ship-model test lint format clean

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

# Rebuild the model that ships in the package (6-21 minutes on 2 cores, by host), then commit
# src/digit_recognizer/assets/model.onnx and model_card.json.
ship-model: install
	$(BIN)/digits train --recipe robust --out runs/robust --overwrite
	$(BIN)/digits export runs/robust --out src/digit_recognizer/assets/model.onnx \
		--handwriting data/handwriting

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs test-artifacts .pytest_cache .ruff_cache

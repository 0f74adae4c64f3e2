"""digit-recognizer: read handwritten digits; compare an MLP and a CNN on MNIST.

The public API is importable from here (`from digit_recognizer import train_model, TrainConfig`).
Names load lazily, so importing the package stays fast and never imports TensorFlow until
a training or evaluation function is actually used.
"""

from importlib import import_module

# Public name -> (module, attribute). The stage modules are named `train`, `evaluate` and
# `compare`, so their main functions are exported under names that cannot shadow them.
_EXPORTS = {
    "Dataset": ("data", "Dataset"),
    "load_dataset": ("data", "load_dataset"),
    "split_validation": ("data", "split_validation"),
    "build_model": ("models", "build_model"),
    "model_names": ("models", "model_names"),
    "TrainConfig": ("config", "TrainConfig"),
    "recipe_config": ("config", "recipe_config"),
    "Run": ("train", "Run"),
    "train_model": ("train", "train"),
    "Metrics": ("evaluate", "Metrics"),
    "evaluate_model": ("evaluate", "evaluate"),
    "evaluate_run": ("evaluate", "evaluate_run"),
    "compare_runs": ("compare", "compare"),
    "DigitsError": ("errors", "DigitsError"),
}
__all__ = [*_EXPORTS, "__version__"]


def _version() -> str:
    # importlib.metadata costs ~50 ms to import: too much for `digits predict`'s cold start.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digit-recognizer")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        return _version()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'digit_recognizer' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(import_module(f"digit_recognizer.{module}"), attribute)

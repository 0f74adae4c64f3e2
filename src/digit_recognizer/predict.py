"""Read digits from images with ONNX Runtime. Never imports TensorFlow, so it starts fast.

recognizer = Recognizer()              # the shipped model, session created once
prediction = recognizer.read("seven.jpg")
prediction.digit, prediction.confidence
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer import preprocess as pp
from digit_recognizer import segment
from digit_recognizer.artifacts import card_path, sha256_file
from digit_recognizer.errors import DigitsError, ImageError, NoDigitError
from digit_recognizer.images import MAX_PIXELS, WORK_SIZE, load_grey, open_image
from digit_recognizer.number_reader import NumberReader, NumberReading

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "model.onnx"


@dataclass(frozen=True)
class Prediction:
    """One digit read from an image."""

    digit: int
    confidence: float
    probabilities: list[float]  # ten values, digits 0-9
    view: np.ndarray  # (28, 28) float32: what the model saw
    box: tuple[int, int, int, int] | None = None  # where in the image (--multi), px
    unsure: bool = False  # the runner-up came close: the answer may as well be it

    @property
    def runner_up(self) -> int:
        """The second most probable digit."""
        return int(np.argsort(self.probabilities)[-2])

    def as_dict(self) -> dict:
        result = {
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "runner_up": self.runner_up,
            "runner_up_probability": round(self.probabilities[self.runner_up], 6),
            "unsure": self.unsure,
            "probabilities": [round(p, 6) for p in self.probabilities],
        }
        if self.box is not None:
            result["box"] = list(self.box)
        return result


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling: softmax(log p / T). T > 1 softens over-confident outputs; the
    ranking, and so the predicted digit, never changes."""
    if temperature == 1.0:
        return probabilities
    # softmax(log p / T) = p ** (1/T), renormalised: three array operations instead of
    # eight (7 us instead of 20 per image). Dividing by the top probability first keeps
    # the largest term at 1, as subtracting the largest logit would.
    scaled = np.power(probabilities / probabilities.max(axis=-1, keepdims=True), 1.0 / temperature)
    scaled /= scaled.sum(axis=-1, keepdims=True)
    return scaled


def top_two_gap(probabilities: np.ndarray) -> np.ndarray:
    """Most probable minus runner-up, per row of (..., 10) probabilities: how clearly the
    answer won. The "unsure" margin is chosen on it (evaluate) and applied to it (here)."""
    second, first = np.moveaxis(np.sort(probabilities, axis=-1)[..., -2:], -1, 0)
    return first - second


def resolve_model(model: str | Path | None) -> Path:
    """None or 'default': the shipped model; else an .onnx file or a run folder holding one."""
    if model in (None, "default"):
        return DEFAULT_MODEL
    path = Path(model)
    if path.is_dir():
        path = path / "model.onnx"
    if path.suffix in (".keras", ".h5"):
        raise DigitsError(f"{model}: predict runs ONNX models; run `digits export {model}` first")
    if not path.is_file():
        raise DigitsError(f"model {model} not found (expected an .onnx file or a run folder)")
    return path


def open_session(path: Path, threads: int = 1):
    """An ONNX Runtime session on the CPU, or a one-line DigitsError for a bad file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One image is ~5 MFLOP: thread hand-offs cost more than they save, and a server
    # answers concurrent requests from separate threads anyway.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise DigitsError(f"{path}: not a loadable ONNX model ({e})") from None


def model_version(path: Path) -> str:
    """What feedback names a model by: its file's content, so the same bytes are the same
    version wherever they are served from."""
    return sha256_file(path)[:12]


def load_card(onnx_path: Path) -> dict:
    path = card_path(onnx_path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class Recognizer:
    """An ONNX Runtime session over one model, plus the shared preprocessing."""

    def __init__(
        self, model: str | Path | None = None, threads: int = 1, number_model: Path | None = None
    ):
        self.model_path = resolve_model(model)
        self.number_model = number_model  # None: the shipped number model
        self._number_reader: NumberReader | None = None
        self.session = open_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.card = load_card(self.model_path)
        self.version = model_version(self.model_path)
        # Fitted on the validation split by `digits evaluate` and carried by the model card;
        # applied here unless `digits export` folded it into the file's last layer.
        calibration = self.card.get("calibration", {})
        in_model = calibration.get("in_model", False)
        self.temperature = 1.0 if in_model else float(calibration.get("temperature", 1.0))
        # Chosen on the validation split by `digits evaluate`; a model without it never says
        # it is unsure (0: no gap is smaller).
        self.unsure_margin = float(calibration.get("unsure", {}).get("margin", 0.0))

    def probabilities(self, views: np.ndarray) -> np.ndarray:
        """(N, 28, 28) float32 0-255 -> (N, 10) probabilities."""
        batch = np.asarray(views, np.float32).reshape(-1, 28, 28, 1)
        probabilities = self.session.run(None, {self.input_name: batch})[0]
        return apply_temperature(probabilities, self.temperature)

    def _prediction(self, view: np.ndarray, probabilities: np.ndarray, box=None) -> Prediction:
        digit = int(np.argmax(probabilities))
        return Prediction(
            digit=digit,
            confidence=float(probabilities[digit]),
            probabilities=[float(p) for p in probabilities],
            view=view,
            box=box,
            unsure=bool(top_two_gap(probabilities) < self.unsure_margin),
        )

    def read(self, source, preprocessing: bool = True, max_pixels: int = MAX_PIXELS) -> Prediction:
        """Read one digit from an image (bytes, path, PIL image or grey array); images over
        `max_pixels` are refused before they are decoded."""
        view = pp.preprocess(source, max_pixels) if preprocessing else pp.naive_resize(source)
        return self._prediction(view, self.probabilities(view[np.newaxis])[0])

    def read_row(self, source) -> list[Prediction]:
        """Read a row of well-separated digits, left to right, one connected blob each (the
        reader before `read_number`; kept for comparison)."""
        digits = segment.split_digits(source)
        probabilities = self.probabilities(np.stack([d.image for d in digits]))
        return [
            self._prediction(d.image, p, d.box) for d, p in zip(digits, probabilities, strict=True)
        ]

    @property
    def number_reader(self) -> NumberReader:
        """The number model's session, opened on first use (reading digits never needs it)."""
        if self._number_reader is None:
            self._number_reader = NumberReader(self.number_model)
        return self._number_reader

    def read_number(
        self, source, max_pixels: int = MAX_PIXELS, digit_model: bool = True
    ) -> NumberReading:
        """Read a whole number (a year, a meter reading), its digits touching or not, from an
        image (bytes, path, PIL image or grey array). `digit_model=False` leaves the digit
        model out (the number and context models alone, for comparison)."""
        if isinstance(source, np.ndarray):
            grey = np.asarray(source, np.float32)
            size = grey.shape[::-1]
        else:
            image = source if isinstance(source, Image.Image) else open_image(source, max_pixels)
            size = image.size
            # A number is wide: its digits get fewer pixels than a lone digit's at 512 px.
            grey = load_grey(image, max_pixels, work_size=2 * WORK_SIZE)
        if grey.ndim != 2:  # as preprocess refuses it
            raise ImageError(f"expected a 2-D grey image, got shape {grey.shape}")
        if min(grey.shape) < 2:
            raise NoDigitError(f"no number found (the image is {grey.shape} px)")
        helper = self.probabilities if digit_model else None
        reading = self.number_reader.read(grey, digit_model=helper)
        return reading.scaled(size[0] / grey.shape[1], size[1] / grey.shape[0])

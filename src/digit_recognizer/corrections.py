"""What the stored corrections are used for besides fine-tuning: an image folder that
`digits evaluate-images` reads, and a review of the ones most likely mislabelled; and
corrections sent as the page sends them, for demonstrations and tests."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import write_bytes, write_text
from digit_recognizer.errors import DigitsError
from digit_recognizer.feedback import Correction, FeedbackStore, StoredCorrection
from digit_recognizer.images import grey_png

CSV_FIELDS = ("file", "label", "predicted", "model_version", "client_id", "created")


def export_corrections(store: FeedbackStore, out: Path) -> list[Path]:
    """Each correction as `<label>_<model version>_<id>.png` (its 28x28 view) plus labels.csv;
    the name's source field is the version that answered, for evaluate-images' per-source
    table."""
    rows = store.corrections()
    if not rows:
        raise DigitsError(f"no corrections in {store.display_url}")
    out = Path(out)
    written, table = [], io.StringIO()
    writer = csv.writer(table)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        source = re.sub(r"[^A-Za-z0-9.-]", "-", row.model_version)  # `_` splits name fields
        path = out / f"{row.label}_{source}_{row.id:06d}.png"
        write_bytes(path, grey_png(row.view))
        written.append(path)
        writer.writerow(
            (path.name, row.label, row.predicted, row.model_version, row.client_id, row.created)
        )
    write_text(out / "labels.csv", table.getvalue())
    return written


def review_corrections(
    store: FeedbackStore, model: str | Path | None = None, top: int = 40
) -> list[tuple[StoredCorrection, float, int]]:
    """The `top` corrections whose label the model finds least likely, least first, as
    (correction, probability of the given label, the model's own digit).

    The default model is the shipped one, which never trains on corrections, so its
    probabilities are out of sample for every row (a fine-tuned version's would not be)."""
    from digit_recognizer.predict import Recognizer

    rows = store.corrections()
    if not rows:
        raise DigitsError(f"no corrections in {store.display_url}")
    probabilities = Recognizer(model).probabilities(np.stack([r.view for r in rows]))
    given = probabilities[np.arange(len(rows)), [r.label for r in rows]]
    order = np.argsort(given, kind="stable")[:top]
    return [(rows[i], float(given[i]), int(probabilities[i].argmax())) for i in order]


def review_grid(reviewed: list[tuple[StoredCorrection, float, int]], path: Path) -> Path:
    """The reviewed corrections as a picture: 'given label -> model's digit, p(given)'."""
    from digit_recognizer.plots import digit_grid

    return digit_grid(
        np.stack([row.view for row, _, _ in reviewed]),
        np.array([row.label for row, _, _ in reviewed]),
        np.array([digit for _, _, digit in reviewed]),
        np.array([p for _, p, _ in reviewed]),
        path,
        "Corrections to check: label given → model's digit, its probability of the label",
        tuple(str(d) for d in range(10)),
    )


def send_corrections(
    store: FeedbackStore, views: np.ndarray, labels: np.ndarray, clients: int = 10
) -> None:
    """Store one correction per view as the page would: the served (shipped) model's answer
    and probabilities, the given label, from `clients` pseudonymous clients in turn."""
    from digit_recognizer.predict import Recognizer

    recognizer = Recognizer()
    probabilities = recognizer.probabilities(np.asarray(views, np.float32))
    for k, (view, label, p) in enumerate(zip(views, labels, probabilities, strict=True)):
        answer = int(p.argmax())
        client = f"client-{k % clients:04d}"
        store.add(Correction(client, recognizer.version, answer, int(label), tuple(p), view))

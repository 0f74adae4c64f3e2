"""The feedback store (SQLite and a real PostgreSQL server), /api/feedback and `digits
feedback`: what is kept, every refusal, the rate limit, migrations and deletion."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from conftest import run_digits
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digit_recognizer import feedback as fb
from digit_recognizer.errors import DigitsError
from digit_recognizer.images import grey_png
from digit_recognizer.web.app import create_app

STORED_COLUMNS = {
    "id", "created", "client_id", "model_version", "predicted", "label", "probabilities", "view",
}  # fmt: skip


def correction(label: int = 1, client: str = "client-0001", seed: int = 0) -> fb.Correction:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(10))
    return fb.Correction(
        client_id=client,
        model_version="v-test",
        predicted=int(probabilities.argmax()),
        label=label,
        probabilities=tuple(float(p) for p in probabilities),
        view=rng.integers(0, 256, (28, 28), dtype=np.uint8),
    )


def test_a_correction_round_trips_with_nothing_else_stored(db_url):
    import sqlalchemy as sa

    store = fb.open_store(db_url)
    sent = correction(label=7)
    row_id = store.add(sent)
    (row,) = store.corrections()
    assert row.id == row_id and row.label == 7 and row.client_id == sent.client_id
    assert np.array_equal(row.view, sent.view) and row.probabilities == sent.probabilities
    with store.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("feedback")}
    assert columns == STORED_COLUMNS
    assert store.schema_version() == fb.SCHEMA_VERSION


def test_stats_delete_and_the_rate_limit(db_url):
    store = fb.open_store(db_url)
    for k in range(3):
        store.add(correction(label=k, client="alice-0001", seed=k), rate_limit=3)
    with pytest.raises(fb.RateLimitedError):
        store.add(correction(client="alice-0001"), rate_limit=3)
    store.add(correction(label=9, client="bob-00001"), rate_limit=3)  # others are not held up
    stats = store.stats()
    assert stats["corrections"] == 4 and stats["clients"] == 2
    assert stats["per_label"]["9"] == 1 and stats["per_version"]["v-test"]["corrections"] == 4
    assert store.delete_client("alice-0001") == 3
    assert [r.client_id for r in store.corrections()] == ["bob-00001"]


def test_a_newer_schema_migrates_once_and_a_future_one_is_refused(db_url, monkeypatch):
    import sqlalchemy as sa

    fb.open_store(db_url).add(correction())
    monkeypatch.setattr(fb, "SCHEMA_VERSION", 2)
    steps = []

    def add_note_column(connection, tables):
        steps.append(2)
        connection.execute(sa.text("ALTER TABLE feedback ADD COLUMN note VARCHAR(20)"))

    monkeypatch.setitem(fb.MIGRATIONS, 2, add_note_column)
    store = fb.open_store(db_url)
    fb.open_store(db_url)  # already at 2: not run again
    assert steps == [2] and store.schema_version() == 2 and store.count() == 1
    monkeypatch.setattr(fb, "SCHEMA_VERSION", 1)
    with pytest.raises(DigitsError, match="schema version 2"):
        fb.open_store(db_url)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("client_id", "short", "client_id"),
        ("client_id", "has spaces in it", "client_id"),
        ("model_version", "", "model_version"),
        ("predicted", 10, "predicted"),
        ("label", -1, "label"),
        ("label", True, "label"),
        ("probabilities", (0.5,) * 10, "probabilities"),
        ("probabilities", (0.1,) * 9, "probabilities"),
        ("view", np.zeros((28, 27), np.uint8), "view"),
        ("view", np.zeros((28, 28), np.float32), "view"),
    ],
)
def test_bad_fields_are_refused_by_name(field, value, message):
    bad = correction().__dict__ | {field: value}
    with pytest.raises(fb.FeedbackError, match=message):
        fb.checked(fb.Correction(**bad))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    label=st.integers(0, 9),
    client=st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_valid_correction_is_stored_exactly(tmp_path_factory, label, client, seed):
    store = fb.open_store(f"sqlite:///{tmp_path_factory.mktemp('db') / 'f.sqlite'}")
    sent = correction(label, client, seed)
    store.add(sent)
    (row,) = store.corrections(client_id=client)
    assert (row.label, row.client_id, row.probabilities) == (label, client, sent.probabilities)
    assert np.array_equal(row.view, sent.view)


def test_a_bad_or_unreachable_database_is_one_clear_error(tmp_path):
    with pytest.raises(DigitsError, match="not a database URL"):
        fb.open_store("not a url")
    with pytest.raises(DigitsError, match="only sqlite"):
        fb.open_store("mysql://localhost/db")
    with pytest.raises(fb.StoreUnavailableError):
        fb.open_store(f"postgresql://nobody@/db?host={tmp_path}")  # no server there


# ---- /api/feedback -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An app with its own SQLite store and a limit of 5 corrections a minute per client."""
    url = f"sqlite:///{tmp_path_factory.mktemp('served') / 'feedback.sqlite'}"
    client = TestClient(create_app(db=url, feedback_rate=5))
    version = client.get("/api/model").json()["model_version"]
    return client, url, version


def body(version: str, client_id: str = "page-client-01", **fields) -> dict:
    sent = correction()
    return {
        "client_id": client_id,
        "model_version": version,
        "predicted": sent.predicted,
        "label": 4,
        "probabilities": list(sent.probabilities),
        "view_png": base64.b64encode(grey_png(sent.view)).decode(),
    } | fields


def test_a_posted_correction_is_stored_with_its_view(served):
    client, url, version = served
    sent = body(version, client_id="stored-client-1")
    response = client.post("/api/feedback", json=sent)
    assert response.status_code == 201, response.text
    (row,) = fb.open_store(url).corrections(client_id="stored-client-1")
    assert row.id == response.json()["id"] and row.label == 4 and row.model_version == version
    assert np.array_equal(row.view, correction().view)


def test_the_answer_names_the_model_version_feedback_must_quote(served):
    client, _, version = served
    from PIL import Image, ImageDraw

    image = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(image).line([(50, 10), (50, 90)], fill=0, width=9)
    import io

    png = io.BytesIO()
    image.save(png, "PNG")
    answer = client.post(
        "/api/predict", content=png.getvalue(), headers={"content-type": "image/png"}
    )
    assert answer.json()["model_version"] == version
    assert client.get("/api/health").json()["model_version"] == version


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"label": 10}, 422, "label"),
        ({"label": "7"}, 422, "label"),
        ({"predicted": None}, 422, "predicted"),
        ({"model_version": "never-served"}, 422, "unknown model_version"),
        ({"client_id": "x"}, 422, "client_id"),
        ({"probabilities": [1.0]}, 422, "probabilities"),
        ({"view_png": "not base64!"}, 422, "view_png"),
        ({"view_png": base64.b64encode(grey_png(np.zeros((27, 28)))).decode()}, 422, "28x28"),
        ({"view_png": base64.b64encode(grey_png(np.zeros((280, 280)))).decode()}, 422, "view_png"),
        ({"view_png": base64.b64encode(b"GIF89a not really").decode()}, 422, "view_png"),
    ],
)
def test_bad_fields_get_a_422_that_names_them(served, change, status, message):
    client, _, version = served
    response = client.post("/api/feedback", json=body(version, client_id="bad-fields-1") | change)
    assert response.status_code == status and message in response.json()["error"]


def test_every_other_refusal_is_json(served):
    client, _, version = served
    post = client.post
    missing = {k: v for k, v in body(version).items() if k != "label"}
    assert post("/api/feedback", json=missing).status_code == 422
    assert post("/api/feedback", json=[1, 2]).status_code == 422
    as_json = {"content-type": "application/json"}
    checks = [
        (post("/api/feedback", content=b"{", headers=as_json), 400),
        (post("/api/feedback", content=b"[" * 1000, headers=as_json), 400),
        (post("/api/feedback", content=b"x" * 70_000, headers=as_json), 413),
        (post("/api/feedback", data={"label": "4"}), 415),
        (client.get("/api/feedback"), 405),
    ]
    for response, status in checks:
        assert response.status_code == status and "error" in response.json(), response.text


def test_one_client_is_held_to_the_rate_limit_with_a_429(served):
    client, _, version = served
    statuses = [
        client.post("/api/feedback", json=body(version, client_id="eager-client-1")).status_code
        for _ in range(7)
    ]
    assert statuses == [201] * 5 + [429] * 2
    other = client.post("/api/feedback", json=body(version, client_id="calm-client-1"))
    assert other.status_code == 201


def test_a_database_that_is_down_gets_a_503(tmp_path):
    client = TestClient(create_app(db=f"postgresql://nobody@/db?host={tmp_path}"))
    version = client.get("/api/model").json()["model_version"]
    response = client.post("/api/feedback", json=body(version))
    assert response.status_code == 503 and "database" in response.json()["error"]


FIELDS = ["client_id", "model_version", "predicted", "label", "probabilities", "view_png", "x"]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-20, 20), st.floats(allow_nan=True),
    st.text(max_size=20), st.lists(st.floats(0, 1), max_size=12),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=st.dictionaries(st.sampled_from(FIELDS), VALUES))
def test_random_feedback_bodies_get_only_documented_statuses(served, document):
    client, _, version = served
    # Python's json writes NaN and Infinity (httpx's json= refuses them), and the server's
    # parser reads them: such numbers must be refused as fields, not crash anything.
    sent = json.dumps(body(version, client_id="fuzzed-client") | document)
    response = client.post(
        "/api/feedback", content=sent, headers={"content-type": "application/json"}
    )
    assert response.status_code in (201, 422, 429), response.text
    assert response.status_code == 201 or "error" in response.json()


# ---- digits feedback ------------------------------------------------------------------------


def test_feedback_commands_stats_export_review_delete(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.sqlite'}"
    store = fb.open_store(url)
    for k in range(6):
        store.add(correction(label=k % 3, client=f"user-{k % 2:04d}", seed=k))
    stats = run_digits("feedback", "stats", "--db", url)
    assert stats.returncode == 0 and "6 corrections from 2 clients" in stats.stdout
    exported = run_digits("feedback", "export", "--out", str(tmp_path / "out"), "--db", url)
    assert exported.returncode == 0, exported.stderr
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 6 and (tmp_path / "out" / "labels.csv").read_text().count("\n") == 7
    scored = run_digits("evaluate-images", str(tmp_path / "out"))
    assert scored.returncode == 0, scored.stderr
    review = run_digits(
        "feedback", "review", "--db", url, "--top", "4", "--out", str(tmp_path / "r.png")
    )
    assert review.returncode == 0 and (tmp_path / "r.png").stat().st_size > 1000, review.stderr
    deleted = run_digits("feedback", "delete", "--client", "user-0000", "--db", url)
    assert deleted.returncode == 0 and "deleted 3" in deleted.stdout
    assert {r.client_id for r in store.corrections()} == {"user-0001"}


def test_feedback_commands_refuse_a_bad_db_in_one_line(tmp_path):
    result = run_digits("feedback", "stats", "--db", "nonsense")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "not a database URL" in result.stderr
    empty = run_digits("feedback", "export", "--out", str(tmp_path), "--db",
                       f"sqlite:///{tmp_path / 'empty.sqlite'}")  # fmt: skip
    assert empty.returncode == 1 and "no corrections" in empty.stderr

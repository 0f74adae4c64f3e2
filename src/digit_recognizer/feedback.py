"""The corrections store: what people told the model about its answers, in SQLite (embedded,
the default) or PostgreSQL (several replicas on several hosts), through SQLAlchemy Core.

store = open_store("sqlite:///feedback.sqlite")        # or "postgresql://user@host/db"
store.add(Correction(client_id, model_version, predicted, label, probabilities, view))
store.stats(), store.corrections(), store.delete_client(client_id)

A row holds the 28x28 view the model saw and those fields only: never the uploaded image,
its EXIF, or the sender's address. The client id is a random name the browser made up.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import user_data_dir
from digit_recognizer.errors import DigitsError

SCHEMA_VERSION = 1
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MODEL_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
RATE_WINDOW_S = 60.0  # a client's corrections are counted over this window
RATE_LIMIT = 30  # corrections a client may send per window, unless a server says otherwise


class FeedbackError(DigitsError):
    """A correction that cannot be stored as sent (a bad field): the client's to fix."""


class RateLimitedError(DigitsError):
    """This client sent more corrections in the window than the store takes."""


class StoreUnavailableError(DigitsError):
    """The database cannot be reached or refused the operation."""


@dataclass(frozen=True)
class Correction:
    """One answer and what its user said it is."""

    client_id: str
    model_version: str
    predicted: int
    label: int
    probabilities: tuple[float, ...]  # ten, as the model answered
    view: np.ndarray  # (28, 28) uint8: the view the model read, white ink on black


@dataclass(frozen=True)
class StoredCorrection(Correction):
    id: int = 0
    created: float = 0.0  # Unix time, seconds

    @property
    def agreed(self) -> bool:
        return self.predicted == self.label


def _digit(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise FeedbackError(f"{name} must be a digit 0-9, got {value!r}")
    return value


def checked(correction: Correction) -> Correction:
    """The correction with its fields validated (FeedbackError naming the first bad one)."""
    if not isinstance(correction.client_id, str) or not CLIENT_ID.fullmatch(correction.client_id):
        raise FeedbackError("client_id must be 8-64 letters, digits, '-' or '_'")
    if not isinstance(correction.model_version, str) or not MODEL_VERSION.fullmatch(
        correction.model_version
    ):
        raise FeedbackError("model_version must be 1-64 letters, digits, '.', '-' or '_'")
    _digit(correction.predicted, "predicted")
    _digit(correction.label, "label")
    probabilities = correction.probabilities
    if (
        not isinstance(probabilities, list | tuple)
        or len(probabilities) != 10
        or not all(isinstance(p, numbers.Real) and not isinstance(p, bool) for p in probabilities)
        or not all(0.0 <= p <= 1.0 for p in probabilities)
        or abs(sum(probabilities) - 1.0) > 0.01
    ):
        raise FeedbackError("probabilities must be ten numbers in [0, 1] that sum to 1")
    view = np.asarray(correction.view)
    if view.shape != (28, 28) or view.dtype != np.uint8:
        raise FeedbackError(f"view must be a 28x28 8-bit grey image, got {view.shape} {view.dtype}")
    return Correction(
        correction.client_id,
        correction.model_version,
        correction.predicted,
        correction.label,
        tuple(float(p) for p in probabilities),
        view,
    )


def default_url() -> str:
    """DIGITS_DB, else an SQLite file in the user's data directory."""
    if url := os.environ.get("DIGITS_DB"):
        return url
    return f"sqlite:///{user_data_dir() / 'feedback.sqlite'}"


def _schema():
    import sqlalchemy as sa

    metadata = sa.MetaData()
    version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))
    feedback = sa.Table(
        "feedback",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("predicted", sa.SmallInteger, nullable=False),
        sa.Column("label", sa.SmallInteger, nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("view", sa.LargeBinary, nullable=False),  # 784 bytes, row by row
        sa.Index("feedback_client_created", "client_id", "created"),
    )
    return metadata, version, feedback


# Each schema version's step from the one before, run once, in order, in one transaction
# that also records the new version: a database made by an older release migrates on open.
MIGRATIONS: dict[int, Callable] = {
    1: lambda connection, tables: tables["feedback"].create(connection),
}


def _engine(url: str):
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise DigitsError(
            f"--db {url!r} is not a database URL (sqlite:///FILE or postgresql://...)"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    if backend != "sqlite":
        raise DigitsError(
            f"--db {url!r}: only sqlite:/// and postgresql:// databases are supported"
        )
    return _sqlite_engine(parsed)


def _sqlite_engine(parsed):
    import sqlalchemy as sa
    from sqlalchemy import event

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_settings(dbapi_connection, _record):
        # WAL: readers never block the writer; the busy timeout makes a second worker's
        # writer wait for the lock instead of failing; FULL syncs each commit to disk.
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves, below
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=FULL"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        # Take the write lock at BEGIN, not at the first write: a read-then-write
        # transaction (the rate limit's count, then the insert) cannot deadlock another.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class FeedbackStore:
    """The corrections in one database; safe to share between threads and processes."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        self.engine = _engine(url)
        self.metadata, self.version_table, self.table = _schema()
        self._sa = sa
        with self._database_errors():
            self._migrate()

    @contextlib.contextmanager
    def _database_errors(self):
        """The driver's errors (server down, disk full, locked too long) as one line."""
        try:
            yield
        except self._sa.exc.SQLAlchemyError as e:
            raise StoreUnavailableError(f"database {self.display_url}: {_first_line(e)}") from None

    @property
    def display_url(self) -> str:
        return self._sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _lock(self, connection, key: str) -> None:
        """On PostgreSQL, serialise this transaction with others naming the same key (SQLite's
        BEGIN IMMEDIATE already serialises every writer)."""
        if self.engine.dialect.name == "postgresql":
            connection.execute(
                self._sa.text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": zlib.crc32(key.encode())},
            )

    def _migrate(self) -> None:
        sa = self._sa
        with self.engine.begin() as connection:
            self._lock(connection, "schema")
            self.version_table.create(connection, checkfirst=True)
            current = connection.execute(sa.select(sa.func.max(self.version_table.c.version)))
            version = current.scalar() or 0
            if version > SCHEMA_VERSION:
                raise DigitsError(
                    f"database {self.display_url} has schema version {version}; this release "
                    f"knows up to {SCHEMA_VERSION}: upgrade digit-recognizer"
                )
            tables = {"feedback": self.table}
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](connection, tables)
            if version < SCHEMA_VERSION:
                connection.execute(self.version_table.delete())
                connection.execute(self.version_table.insert().values(version=SCHEMA_VERSION))

    def schema_version(self) -> int:
        sa = self._sa
        with self._database_errors(), self.engine.connect() as connection:
            query = sa.select(sa.func.max(self.version_table.c.version))
            return int(connection.execute(query).scalar() or 0)

    def add(self, correction: Correction, rate_limit: int | None = None) -> int:
        """Store one correction; its id once committed. `rate_limit`: the most corrections
        one client may add per RATE_WINDOW_S (None: no limit)."""
        sa, c = self._sa, checked(correction)
        now = time.time()
        row = {
            "created": now,
            "client_id": c.client_id,
            "model_version": c.model_version,
            "predicted": c.predicted,
            "label": c.label,
            "probabilities": list(c.probabilities),
            "view": c.view.tobytes(),
        }
        with self._database_errors(), self.engine.begin() as connection:
            if rate_limit is not None:
                self._lock(connection, c.client_id)
                recent = sa.select(sa.func.count()).where(
                    self.table.c.client_id == c.client_id,
                    self.table.c.created > now - RATE_WINDOW_S,
                )
                if connection.execute(recent).scalar() >= rate_limit:
                    raise RateLimitedError(
                        f"over {rate_limit} corrections a minute from this client"
                    )
            return int(
                connection.execute(self.table.insert().values(**row)).inserted_primary_key[0]
            )

    def corrections(self, client_id: str | None = None) -> list[StoredCorrection]:
        """Every stored correction (or one client's), oldest first."""
        query = self._sa.select(self.table).order_by(self.table.c.id)
        if client_id is not None:
            query = query.where(self.table.c.client_id == client_id)
        with self._database_errors(), self.engine.connect() as connection:
            return [_stored(row) for row in connection.execute(query).mappings()]

    def count(self) -> int:
        with self._database_errors(), self.engine.connect() as connection:
            return int(
                connection.execute(
                    self._sa.select(self._sa.func.count()).select_from(self.table)
                ).scalar()
            )

    def delete_client(self, client_id: str) -> int:
        """Forget everything one client sent; how many rows went."""
        with self._database_errors(), self.engine.begin() as connection:
            deleted = connection.execute(
                self.table.delete().where(self.table.c.client_id == client_id)
            )
            return int(deleted.rowcount)

    def stats(self) -> dict:
        """Counts per label and per model version, and how often the model was right."""
        rows = self.corrections()
        agreed = [r.agreed for r in rows]
        per_version: dict[str, list[bool]] = {}
        for r in rows:
            per_version.setdefault(r.model_version, []).append(r.agreed)
        return {
            "corrections": len(rows),
            "clients": len({r.client_id for r in rows}),
            "agreement": float(np.mean(agreed)) if rows else None,
            "per_label": {str(d): sum(r.label == d for r in rows) for d in range(10)},
            "per_version": {
                v: {"corrections": len(a), "agreement": float(np.mean(a))}
                for v, a in sorted(per_version.items())
            },
        }

    def close(self) -> None:
        self.engine.dispose()


def _stored(row) -> StoredCorrection:
    return StoredCorrection(
        client_id=row["client_id"],
        model_version=row["model_version"],
        predicted=int(row["predicted"]),
        label=int(row["label"]),
        probabilities=tuple(float(p) for p in row["probabilities"]),
        view=np.frombuffer(bytes(row["view"]), np.uint8).reshape(28, 28),
        id=int(row["id"]),
        created=float(row["created"]),
    )


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def open_store(url: str | None = None) -> FeedbackStore:
    """The store at `url` (None: DIGITS_DB or the default SQLite file), schema made or
    migrated on first use."""
    return FeedbackStore(url or default_url())

"""The two databases the store runs on, behind one connection interface: SQLite (a file, the default) and
PostgreSQL (`server.store.url`, shared by several hosts).

Why one place: the store and its migrations are written once, in SQLite's dialect; `PostgresDatabase`
translates the few differences (placeholders, AUTOINCREMENT, INSERT OR IGNORE, json_each, REAL, BEGIN
IMMEDIATE, the implicit rowid) as each statement runs, so there is one schema, one migration list and one
copy of every query. Both connections run in autocommit (each statement durable on its own, so a SIGKILL
loses nothing written); `transaction()` groups statements that must land together.
"""

from __future__ import annotations

import contextlib
import functools
import pathlib
import re
import sqlite3
import threading
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """A connection the store shares between the event loop and the odd worker thread (`lock`)."""

    kind: str  # "sqlite" | "postgresql"
    location: str  # the file, or the URL without its password (what the server prints)
    path: pathlib.Path | None  # the SQLite file; None on PostgreSQL
    lock: threading.RLock

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def migration_lock(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


def open_database(location: str | pathlib.Path) -> Database:
    """A postgresql:// URL opens PostgreSQL; anything else is the SQLite file at that path."""
    if isinstance(location, str) and urlsplit(location).scheme in POSTGRES_SCHEMES:
        return PostgresDatabase(location)
    return SqliteDatabase(pathlib.Path(location))


class _Transactions:
    """`transaction()` over a connection's own `execute`, in its dialect's BEGIN."""

    lock: threading.RLock
    begin = "BEGIN IMMEDIATE"
    execute: Callable[..., Cursor]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self.execute(self.begin)
            try:
                yield
                self.execute("COMMIT")
            except BaseException:
                self.execute("ROLLBACK")
                raise


class SqliteDatabase(_Transactions):
    """One connection in WAL mode: readers never wait for the writer, another process may read the file."""

    kind = "sqlite"

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.location = str(path)
        self.lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.row_factory = sqlite3.Row
        with self.lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self._conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        with self.lock:
            return self._conn.executemany(sql, rows)

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        yield  # each migration's BEGIN IMMEDIATE already excludes other writers

    @property
    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self._conn.close()


# ---------------------------------------------------------------- PostgreSQL
_MIGRATION_LOCK_KEY = 0x6376696C  # "cvil": the advisory lock every host takes while it migrates

_TRANSLATIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"%"), "%%"),  # a literal % (psycopg's placeholders are %s)
    (re.compile(r"\?"), "%s"),
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # SQLite's REAL is 8 bytes; PostgreSQL's is 4
    (re.compile(r"^\s*BEGIN IMMEDIATE\s*$", re.I), "BEGIN"),
    (re.compile(r"\bjson_each\(([\w.]+)\)", re.I), r"json_array_elements_text(\1::json) AS json_each(value)"),
]
_INSERT_OR_IGNORE = re.compile(r"^(\s*)INSERT OR IGNORE\b(.*)$", re.I | re.S)
# SQLite gives every table a rowid (insertion order, the store's tie-break); PostgreSQL gets it spelled out,
# as the last column so that an INSERT without a column list still fills the declared ones
_CREATE_TABLE = re.compile(r"^(\s*CREATE TABLE\b.*?)\s*\)\s*$", re.I | re.S)


@functools.lru_cache(maxsize=512)
def to_postgres(sql: str) -> str:
    """One SQLite statement in PostgreSQL's dialect (the store's statements are few and repeat: cached)."""
    for pattern, replacement in _TRANSLATIONS:
        sql = pattern.sub(replacement, sql)
    ignore = _INSERT_OR_IGNORE.match(sql)
    if ignore:
        sql = f"{ignore.group(1)}INSERT{ignore.group(2).rstrip()} ON CONFLICT DO NOTHING"
    return _CREATE_TABLE.sub(r"\1, rowid BIGSERIAL)", sql)


class _Row:
    """A row readable like sqlite3.Row: by position and by column name (`dict(row)` works)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names, self._values = names, values

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key] if isinstance(key, int) else self._values[self._names[key]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _row_factory(cursor: Any) -> Any:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: _Row(names, values)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDatabase(_Transactions):
    """One autocommit connection per process; READ COMMITTED transactions where the store groups statements.
    Several processes (hosts) write at once; PostgreSQL serialises what conflicts."""

    kind = "postgresql"
    begin = "BEGIN"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # the optional extra
            raise RuntimeError("server.store.url is a PostgreSQL URL but psycopg is not installed: "
                               "pip install 'cvi-lab[postgres]'") from exc
        self.path = None
        self.location = redact(url)
        self.lock = threading.RLock()
        try:
            self._conn = psycopg.connect(url, autocommit=True, row_factory=_row_factory)
        except psycopg.OperationalError as exc:
            raise RuntimeError(f"cannot open the store at server.store.url={self.location}: {exc}".strip()) from None
        # SQLite's synchronous=NORMAL: a commit is in the server's WAL at once (a cvi-lab SIGKILL loses nothing)
        # but not fsynced before the reply (a PostgreSQL crash may lose its last ~0.6 s). fsync per commit
        # costs ~12 ms a write on this machine, on the event loop (benchmarks/results/store.md)
        self._conn.execute("SET synchronous_commit = off")

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        with self.lock:
            return self._conn.execute(to_postgres(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        with self.lock:
            cursor = self._conn.cursor()
            cursor.executemany(to_postgres(sql), list(rows))
            return cursor

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Hosts starting together migrate one after the other (the second finds nothing left to do)."""
        with self.lock:
            self._conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
            try:
                yield
            finally:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))

    def close(self) -> None:
        with self.lock:
            self._conn.close()

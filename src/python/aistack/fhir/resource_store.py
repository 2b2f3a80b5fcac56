"""FHIR resources in the service's own database, with the columns search needs, indexed.

One row per resource (its JSON, type, id, version, lastUpdated, and its subject and date range
as columns), one row per searchable token (identifier, code, tag). A contained resource (a
RiskAssessment's Device and Observations) is part of its container's JSON: no row and no
token of its own, so a search finds the container only. Resources are immutable once stored:
the store creates and reads, it never updates or deletes. So the insertion order (``seq``) is
a stable sort key, and a page offset keeps pointing at the same entries while new resources
arrive (they are appended at the end).

Writers take one lock row first, in the same database transaction: conditional creates ("make
it unless one matches") then cannot interleave, even across processes sharing the database,
and a retried publish never duplicates a resource.

Statements are SQLAlchemy Core on a Connection, not the ORM's unit of work: every prediction
stores its resources here, and the ORM's bookkeeping (identity map, flush planning, one INSERT
per row to learn each ``seq``) cost more than the SQL itself (benchmarks/fhir_hook.py: storing
a prediction took 2.6 ms of CPU through the ORM, 1.1 ms through Core).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Select

from aistack.errors import InvalidRequest, PayloadTooLarge
from aistack.fhir.context import instant
from aistack.fhir.search import (
    TOKEN_CHARS,
    Criterion,
    DateMatch,
    Kind,
    ResourceIndex,
    SearchQuery,
    TokenMatch,
    index_of,
    minus,
)
from aistack.store.tables import Base, UTCDateTime

FHIR_BASE_PATH = "/fhir/r4"
"""Where the standalone service serves this store (its FHIR base, under the public URL)."""
MAX_RESOURCE_CHARS = 1_000_000
"""A stored resource's JSON is at most this long: a bounded VARCHAR on IRIS, not a stream."""
LAST_UPDATED_STEP = timedelta(milliseconds=1)
"""``meta.lastUpdated`` has millisecond precision: the stored instant is truncated to it."""
LOCK_ROW = 1


class FhirResourceRow(Base):
    __tablename__ = "fhir_resources"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime())
    content: Mapped[str] = mapped_column(String(MAX_RESOURCE_CHARS))
    """The resource's JSON, id and meta included: served as stored."""
    subject: Mapped[str | None] = mapped_column(String(TOKEN_CHARS), nullable=True)
    """A literal subject reference, ``Type/id`` (or an absolute URL to another server)."""
    date_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    date_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """The clinical date (``effective[x]``; a RiskAssessment's ``occurrence[x]``) as the
    half-open range ``[date_start, date_end)``."""

    __table_args__ = (
        UniqueConstraint("resource_type", "id", name="uq_fhir_resources_type_id"),
        Index("ix_fhir_resources_subject", "resource_type", "subject", "seq"),
        Index("ix_fhir_resources_date", "resource_type", "date_start"),
        Index("ix_fhir_resources_updated", "resource_type", "last_updated"),
    )


class FhirTokenRow(Base):
    """One searchable token of a resource: ``param`` is identifier, code, _tag..."""

    __tablename__ = "fhir_tokens"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_seq: Mapped[int] = mapped_column(Integer, ForeignKey("fhir_resources.seq"))
    resource_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(32))
    system: Mapped[str | None] = mapped_column(String(TOKEN_CHARS), nullable=True)
    code: Mapped[str] = mapped_column(String(TOKEN_CHARS))

    __table_args__ = (Index("ix_fhir_tokens_lookup", "resource_type", "param", "code", "system"),)


class FhirWriteLockRow(Base):
    """A single row every FHIR write updates first: writers queue on its lock."""

    __tablename__ = "fhir_write_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    writes: Mapped[int] = mapped_column(Integer)


TABLES = [FhirResourceRow.__table__, FhirTokenRow.__table__, FhirWriteLockRow.__table__]
_RESOURCES = FhirResourceRow.__table__.c
_TOKENS = FhirTokenRow.__table__.c
_LOCK = FhirWriteLockRow.__table__.c
_STORED_COLUMNS = (
    _RESOURCES.resource_type,
    _RESOURCES.id,
    _RESOURCES.version_id,
    _RESOURCES.last_updated,
    _RESOURCES.content,
)
"""What a :class:`StoredResource` is made of, in its fields' order."""
_TAKE_LOCK = (
    update(FhirWriteLockRow.__table__).where(_LOCK.id == LOCK_ROW).values(writes=_LOCK.writes + 1)
)
_INSERT_RESOURCE = insert(FhirResourceRow.__table__)
_INSERT_RESOURCES_RETURNING = _INSERT_RESOURCE.returning(
    _RESOURCES.seq, _RESOURCES.resource_type, _RESOURCES.id
)
_INSERT_TOKENS = insert(FhirTokenRow.__table__)


@dataclass(frozen=True)
class StoredResource:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content: str

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    def json(self) -> dict[str, Any]:
        return json.loads(self.content)


@dataclass(frozen=True)
class SearchPage:
    total: int
    resources: list[StoredResource]


def _stored(row: Row[Any]) -> StoredResource:
    """A row of :data:`_STORED_COLUMNS` as a :class:`StoredResource`."""
    return StoredResource(*row)


def _select_stored(conditions: list[ColumnElement[bool]]) -> Select[Any]:
    return select(*_STORED_COLUMNS).where(*conditions).order_by(_RESOURCES.seq)


class ResourceStore:
    """Read, search and (through :meth:`writing`) create FHIR resources; thread-safe."""

    def __init__(self, engine: Engine, base_url: str = "") -> None:
        self._engine = engine
        self.base_url = base_url.rstrip("/")
        """This server's FHIR base URL: absolute references under it are stored as Type/id."""
        # One writer at a time in this process: queueing here beats the database's lock waits.
        self._write_lock = threading.Lock()

    def create_schema(self) -> None:
        Base.metadata.create_all(self._engine, tables=TABLES)
        try:
            with self._engine.begin() as connection:
                lock_row = select(_LOCK.id).where(_LOCK.id == LOCK_ROW)
                if connection.execute(lock_row).first() is None:
                    connection.execute(
                        insert(FhirWriteLockRow.__table__).values(id=LOCK_ROW, writes=0)
                    )
        except IntegrityError:
            pass  # another process added the row meanwhile: that is a success too

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        query = _select_stored(
            [_RESOURCES.resource_type == resource_type, _RESOURCES.id == resource_id]
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
            return None if row is None else _stored(row)

    def search(self, query: SearchQuery) -> SearchPage:
        """One page (``count`` from ``offset``, in storage order) and the total."""
        conditions = where(query)
        with self._engine.connect() as connection:
            total = connection.scalar(select(func.count(_RESOURCES.seq)).where(*conditions))
            if not total or query.count == 0 or query.offset >= total:
                return SearchPage(total or 0, [])
            rows = connection.execute(
                _select_stored(conditions).limit(query.count).offset(query.offset)
            )
            return SearchPage(total, [_stored(row) for row in rows])

    def count(self, resource_type: str | None = None) -> int:
        query = select(func.count(_RESOURCES.seq))
        if resource_type is not None:
            query = query.where(_RESOURCES.resource_type == resource_type)
        with self._engine.connect() as connection:
            return connection.scalar(query) or 0

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """One all-or-nothing database transaction, alone among the store's writers."""
        with self._write_lock, self._engine.begin() as connection:
            connection.execute(_TAKE_LOCK)
            yield Writer(connection, self.base_url)


class Writer:
    """Creates resources inside :meth:`ResourceStore.writing`'s transaction."""

    def __init__(self, connection: Connection, base_url: str) -> None:
        self._connection = connection
        self._base_url = base_url

    def matches(self, query: SearchQuery, limit: int = 2) -> list[StoredResource]:
        """Resources matching ``query`` (at most ``limit``): a conditional create's test."""
        shaped = _shape(query)
        if shaped is None:
            rows = self._connection.execute(_select_stored(where(query)).limit(limit))
        else:
            shape, values = shaped
            rows = self._connection.execute(_matching(shape, limit), values)
        return [_stored(row) for row in rows]

    def create(self, resource: dict[str, Any], now: datetime | None = None) -> StoredResource:
        """:meth:`create_all` of one resource."""
        return self.create_all([resource], now)[0]

    def create_all(
        self, resources: list[dict[str, Any]], now: datetime | None = None
    ) -> list[StoredResource]:
        """Store each resource (its ``id`` set) as version 1; the stored JSON carries id and
        meta. InvalidRequest when one cannot be indexed or its id is taken (the transaction
        then fails as a whole); 413 when one is too big."""
        moment = _truncate(now or datetime.now(UTC))
        rows, indexes = [], []
        for resource in resources:
            row, index = self._row(resource, moment)
            rows.append(row)
            indexes.append(index)
        if not rows:
            return []
        try:
            seqs = self._insert(rows)
        except IntegrityError:
            taken = ", ".join(f"{row['resource_type']}/{row['id']}" for row in rows)
            raise InvalidRequest(f"an id is taken already (one of {taken})") from None
        tokens = [
            {
                "resource_seq": seq,
                "resource_type": row["resource_type"],
                "param": param,
                "system": system,
                "code": code,
            }
            for seq, row, index in zip(seqs, rows, indexes, strict=True)
            for param, system, code in index.tokens
        ]
        if tokens:
            self._connection.execute(_INSERT_TOKENS, tokens)
        return [
            StoredResource(row["resource_type"], row["id"], 1, moment, row["content"])
            for row in rows
        ]

    def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert ``rows`` in their order and give each one's ``seq``.

        One ``INSERT ... VALUES (...), (...) RETURNING`` where the dialect has it (SQLite):
        the seqs come back keyed by type and id, which are unique, so their order does not
        matter. Otherwise (IRIS) one INSERT per row, its seq read back as the driver gives it.
        """
        if self._connection.dialect.insert_executemany_returning:
            returned = self._connection.execute(_INSERT_RESOURCES_RETURNING, rows)
            seqs = {(kind, id_): seq for seq, kind, id_ in returned}
            return [seqs[row["resource_type"], row["id"]] for row in rows]
        return [
            self._connection.execute(_INSERT_RESOURCE, row).inserted_primary_key[0] for row in rows
        ]

    def _row(
        self, resource: dict[str, Any], moment: datetime
    ) -> tuple[dict[str, Any], ResourceIndex]:
        """The resource's row (column values) and its search index."""
        resource = {**resource, "meta": {**(resource.get("meta") or {})}}
        resource["meta"].update(versionId="1", lastUpdated=instant(moment))
        try:
            index = index_of(resource, self._base_url)
        except ValueError as error:
            raise InvalidRequest(f"{resource['resourceType']}: {error}") from None
        content = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        if len(content) > MAX_RESOURCE_CHARS:
            raise PayloadTooLarge(
                f"a {resource['resourceType']} of {len(content)} characters is over the "
                f"store's {MAX_RESOURCE_CHARS}"
            )
        row = {
            "resource_type": resource["resourceType"],
            "id": resource["id"],
            "version_id": 1,
            "last_updated": moment,
            "content": content,
            "subject": index.subject,
            "date_start": index.date.start if index.date else None,
            "date_end": index.date.end if index.date else None,
        }
        return row, index


def _truncate(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# --- Search criteria as SQL -----------------------------------------------------------------


class _Slot(str):
    """A value's place in a query's shape: :func:`where` binds it as the parameter it names."""


def _bound(value: Any) -> Any:
    return bindparam(value) if isinstance(value, _Slot) else value


def _shape(query: SearchQuery) -> tuple[SearchQuery, dict[str, Any]] | None:
    """``query`` with each id, reference and token value replaced by a :class:`_Slot`, and
    the slots' values; None when it has a date criterion (its bounds are computed in Python).

    Queries of one shape (type, parameters, token forms, number of values) share one
    statement, built once (:func:`_matching`): building it cost several times running it.
    """
    values: dict[str, Any] = {}

    def slot(value: Any) -> _Slot | None:
        if value is None:
            return None
        name = _Slot(f"v{len(values)}")
        values[name] = value
        return name

    criteria = []
    for criterion in query.criteria:
        if criterion.kind is Kind.DATE:
            return None
        if criterion.kind is Kind.TOKEN:
            any_of: tuple[Any, ...] = tuple(
                replace(match, code=slot(match.code), system=slot(match.system))
                for match in criterion.any_of
            )
        else:
            any_of = tuple(slot(value) for value in criterion.any_of)
        criteria.append(replace(criterion, any_of=any_of))
    return replace(query, criteria=tuple(criteria)), values


@lru_cache(maxsize=256)
def _matching(shape: SearchQuery, limit: int) -> Select[Any]:
    """The statement of a :func:`_shape`: the first ``limit`` matches in storage order."""
    return _select_stored(where(shape)).limit(limit)


def where(query: SearchQuery) -> list[ColumnElement[bool]]:
    conditions = [_condition(query.resource_type, criterion) for criterion in query.criteria]
    # A token criterion already keeps to the type (its subquery does). Saying it again here
    # made SQLite walk every resource of the type by that index and test each against the
    # token list, instead of fetching the listed rows by key: 6 ms instead of 0.5 at 10,000.
    if not any(criterion.kind is Kind.TOKEN for criterion in query.criteria):
        conditions.insert(0, _RESOURCES.resource_type == query.resource_type)
    return conditions


def _condition(resource_type: str, criterion: Criterion) -> ColumnElement[bool]:
    if criterion.kind is Kind.ID:
        return _RESOURCES.id.in_([_bound(value) for value in criterion.any_of])
    if criterion.kind is Kind.REFERENCE:
        return _RESOURCES.subject.in_([_bound(value) for value in criterion.any_of])
    if criterion.kind is Kind.TOKEN:
        tokens = select(_TOKENS.resource_seq).where(
            _TOKENS.resource_type == resource_type,
            _TOKENS.param == criterion.name,
            or_(*(_token(match) for match in criterion.any_of)),
        )
        return _RESOURCES.seq.in_(tokens)
    if criterion.name == "_lastUpdated":
        return or_(
            *(
                _date(match, _RESOURCES.last_updated, None, LAST_UPDATED_STEP)
                for match in criterion.any_of
            )
        )
    return or_(
        *(_date(match, _RESOURCES.date_start, _RESOURCES.date_end) for match in criterion.any_of)
    )


def _token(match: TokenMatch) -> ColumnElement[bool]:
    conditions = []
    if match.code is not None:
        conditions.append(_TOKENS.code == _bound(match.code))
    if match.system_given:
        conditions.append(
            _TOKENS.system.is_(None)
            if match.system is None
            else _TOKENS.system == _bound(match.system)
        )
    return and_(*conditions) if conditions else _TOKENS.code.is_not(None)


def _date(
    match: DateMatch, start: Any, end: Any | None, step: timedelta | None = None
) -> ColumnElement[bool]:
    """FHIR's prefix semantics between the resource's range and the parameter's.

    eq: the parameter's range contains the resource's; gt: the resource's extends after it;
    lt: before it; ge: gt or eq; le: lt or eq. Without an end column the resource's range is
    ``[start, start + step)``, so conditions on its end shift the bound by ``step``.
    """
    low, high = match.range.start, match.range.end

    def end_at_most(bound: datetime) -> ColumnElement[bool]:
        return end <= bound if end is not None else start <= minus(bound, step)

    def end_after(bound: datetime) -> ColumnElement[bool]:
        return end > bound if end is not None else start > minus(bound, step)

    equal = and_(start >= low, end_at_most(high))
    return {
        "eq": equal,
        "gt": end_after(high),
        "lt": start < low,
        "ge": or_(end_after(high), equal),
        "le": or_(start < low, equal),
    }[match.prefix]

"""API keys: created once and shown once, stored as SHA-256, checked in constant time.

A key reads ``ask_<id>_<secret>``: the id finds the row, the SHA-256 of the whole key is
compared with ``hmac.compare_digest``. Keys carry 256 random bits, so a fast hash is the
right one (a slow password hash buys nothing against a secret that cannot be guessed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from aistack.store.tables import ApiKeyRow

KEY_PREFIX = "ask"
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Role(StrEnum):
    PREDICT = "predict"
    READ = "read"
    ADMIN = "admin"


class Permission(StrEnum):
    PREDICT = "predict"  # ask for predictions
    READ_OWN = "read_own"  # read the predictions (and files) one asked for
    READ_ALL = "read_all"  # read every prediction and stored file
    ADMIN = "admin"  # operate the service (later: metrics, model control)


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.PREDICT: frozenset({Permission.PREDICT, Permission.READ_OWN}),
    Role.READ: frozenset({Permission.READ_OWN, Permission.READ_ALL}),
    Role.ADMIN: frozenset(Permission),
}
PERMISSION_ACTIONS: dict[Permission, str] = {
    Permission.PREDICT: "ask for predictions",
    Permission.READ_OWN: "read predictions",
    Permission.READ_ALL: "read every prediction",
    Permission.ADMIN: "administer the service",
}
"""What each permission allows, as a refusal words it: "... may not <action>"."""


class Owned(Protocol):
    """A stored record that remembers who asked for it: a prediction or a job."""

    @property
    def client(self) -> str | None: ...


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and role, or an anonymous caller with explicit rights."""

    name: str
    permissions: frozenset[Permission]
    role: Role | None = None
    key_id: str | None = None

    @classmethod
    def for_key(cls, key: ApiKey) -> Principal:
        return cls(key.name, ROLE_PERMISSIONS[key.role], key.role, key.id)

    @property
    def is_anonymous(self) -> bool:
        return self.key_id is None

    @property
    def client(self) -> str | None:
        """The name recorded with what this caller asks for; None for an anonymous caller."""
        return None if self.is_anonymous else self.name

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def can_read(self, record: Owned | None) -> bool:
        """Read-all callers see every record; read-own callers those they asked for. A
        missing record is unreadable, so that "not yours" and "no such id" look alike."""
        if record is None:
            return False
        return self.can(Permission.READ_ALL) or (
            self.can(Permission.READ_OWN) and record.client == self.name
        )


AUTH_OFF = Principal("anonymous", frozenset(Permission))
"""With AISTACK_AUTH=off every caller may do everything (the local demo)."""

OPEN_V1 = Principal("anonymous", frozenset({Permission.PREDICT}))
"""With AISTACK_V1_OPEN a keyless 2020 client may ask for predictions and nothing else."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, Role(row.role), row.created_at, row.revoked_at)


class KeyStore:
    """Keys in the service's database, so every replica and both runtimes share them.

    Verified keys are remembered for ``cache_s`` seconds: revocation reaches a running
    server within that time, and a request costs no database read in the meantime.
    """

    def __init__(self, engine: Engine, cache_s: float = 5.0) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, role: Role | str) -> tuple[ApiKey, str]:
        """A new key; returns its record and the key itself, which is never stored."""
        if not NAME_PATTERN.match(name):
            raise ValueError(
                f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'"
            )
        role = Role(role)
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(
            id=key_id,
            name=name,
            role=role.value,
            key_sha256=key_sha256(key),
            created_at=datetime.now(UTC),
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as error:
            raise ValueError(f"a key named {name!r} already exists") from error
        return _to_key(row), key

    def list(self) -> list[ApiKey]:
        with self._sessions() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [_to_key(row) for row in rows]

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke by name or id; revoking twice keeps the first time."""
        with self._sessions.begin() as session:
            row = session.scalar(
                select(ApiKeyRow).where(
                    (ApiKeyRow.name == name_or_id) | (ApiKeyRow.id == name_or_id)
                )
            )
            if row is None:
                raise LookupError(f"no key named {name_or_id!r}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            key = _to_key(row)
        with self._lock:
            self._cache = {h: v for h, v in self._cache.items() if v[1].id != key.id}
        return key

    def cached(self, key: str) -> ApiKey | None:
        """The key if it was verified less than ``cache_s`` ago (no database read), else None."""
        with self._lock:
            hit = self._cache.get(key_sha256(key))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self._cache_s else None

    def verify(self, key: str) -> ApiKey | None:
        """The active key matching ``key``, or None; constant-time on the secret."""
        if (hit := self.cached(key)) is not None:
            return hit
        digest = key_sha256(key)
        now = time.monotonic()
        match = KEY_PATTERN.match(key)
        row = None
        if match:
            with self._sessions() as session:
                row = session.get(ApiKeyRow, match.group(1))
        stored = row.key_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(stored, digest) or row is None or row.revoked_at:
            return None
        found = _to_key(row)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, found)
        return found

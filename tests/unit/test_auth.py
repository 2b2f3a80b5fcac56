"""API keys, signed file URLs and rate limits against a real SQLite database."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from aistack.auth.keys import (
    ROLE_PERMISSIONS,
    KeyStore,
    Permission,
    Principal,
    Role,
    key_sha256,
)
from aistack.auth.ratelimit import RateLimiter
from aistack.auth.signing import UrlSigner, load_or_create_secret
from aistack.store import PredictionStore
from aistack.store.tables import ApiKeyRow


@pytest.fixture
def store(tmp_path: Path):
    store = PredictionStore(f"sqlite:///{tmp_path / 'keys.db'}")
    store.create_schema()
    yield store
    store.close()


@pytest.fixture
def keys(store: PredictionStore) -> KeyStore:
    return KeyStore(store.engine, cache_s=60)


def test_a_created_key_verifies_and_only_its_hash_is_stored(keys, store):
    record, key = keys.create("scanner-1", Role.PREDICT)
    assert keys.verify(key) == record
    with store.engine.connect() as connection:
        row = connection.execute(select(ApiKeyRow)).one()
    assert row.key_sha256 == key_sha256(key)
    assert key not in {str(value) for value in row}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # one secret character changed
        lambda k: k.replace("ask_", "ask_0", 1),  # malformed
        lambda k: "",
        lambda k: "ask_000000000000_" + "A" * 43,  # well-formed, unknown id
        lambda k: k + " ",
    ],
)
def test_wrong_keys_do_not_verify(keys, tamper):
    _, key = keys.create("scanner-2", Role.PREDICT)
    assert keys.verify(tamper(key)) is None


def test_revoked_keys_stop_verifying_even_when_cached(keys):
    _, key = keys.create("temp", Role.READ)
    assert keys.verify(key) is not None  # now cached for 60 s
    revoked = keys.revoke("temp")
    assert revoked.revoked_at is not None
    assert keys.verify(key) is None


def test_revocation_reaches_another_process_within_the_cache_time(store):
    """A second KeyStore stands for another server process sharing the database."""
    issuer, server = KeyStore(store.engine), KeyStore(store.engine, cache_s=0.2)
    _, key = issuer.create("elsewhere", Role.PREDICT)
    assert server.verify(key) is not None
    issuer.revoke("elsewhere")
    time.sleep(0.25)
    assert server.verify(key) is None


def test_names_are_unique_and_validated(keys):
    keys.create("alice", Role.ADMIN)
    with pytest.raises(ValueError, match="already exists"):
        keys.create("alice", Role.READ)
    with pytest.raises(ValueError, match="invalid key name"):
        keys.create("no spaces please", Role.READ)
    with pytest.raises(ValueError):
        keys.create("bob", "superuser")


def test_revoking_an_unknown_key_says_so(keys):
    with pytest.raises(LookupError):
        keys.revoke("nobody")


def test_list_shows_every_key_without_secrets(keys):
    keys.create("a", Role.PREDICT)
    keys.create("b", Role.READ)
    keys.revoke("a")
    listed = {k.name: k for k in keys.list()}
    assert listed["a"].active is False and listed["b"].active is True


def test_roles_grant_what_the_security_doc_says():
    predict = Principal("p", ROLE_PERMISSIONS[Role.PREDICT], Role.PREDICT, "x")
    read = Principal("r", ROLE_PERMISSIONS[Role.READ], Role.READ, "y")
    admin = Principal("a", ROLE_PERMISSIONS[Role.ADMIN], Role.ADMIN, "z")
    assert predict.can(Permission.PREDICT) and not predict.can(Permission.READ_ALL)
    assert read.can(Permission.READ_ALL) and not read.can(Permission.PREDICT)
    assert all(admin.can(p) for p in Permission)


def test_signed_urls_are_bound_to_their_path_and_expire():
    signer = UrlSigner("secret", ttl_s=1)
    token = signer.token("result/" + "a" * 32 + ".jpg")
    assert signer.valid("result/" + "a" * 32 + ".jpg", token)
    assert not signer.valid("source/" + "a" * 32 + ".jpg", token)
    # Alter a middle character: the last one of base64 may only carry padding bits.
    middle = len(token) // 2
    altered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    assert not signer.valid("result/" + "a" * 32 + ".jpg", altered)
    assert not UrlSigner("other", ttl_s=1).valid("result/" + "a" * 32 + ".jpg", token)
    assert not signer.valid("result/" + "a" * 32 + ".jpg", None)
    time.sleep(2.1)
    assert not signer.valid("result/" + "a" * 32 + ".jpg", token)


def test_the_signing_secret_is_generated_once_and_private(tmp_path):
    first = load_or_create_secret(tmp_path, None)
    assert load_or_create_secret(tmp_path, None) == first
    assert (tmp_path / "url-signing.key").stat().st_mode & 0o077 == 0
    assert load_or_create_secret(tmp_path, "configured") == "configured"


def test_rate_limiter_answers_how_long_to_wait():
    async def spend() -> None:
        limiter = RateLimiter("3/minute")
        assert [await limiter.retry_after("k") for _ in range(3)] == [None, None, None]
        wait = await limiter.retry_after("k")
        assert wait is not None and 1 <= wait <= 60
        assert await limiter.retry_after("other") is None  # budgets are per client

    asyncio.run(spend())


def test_an_empty_rate_limit_is_no_limit():
    async def spend() -> list[int | None]:
        limiter = RateLimiter("")
        return [await limiter.retry_after("k") for _ in range(1000)]

    assert set(asyncio.run(spend())) == {None}


def test_replicas_starting_together_agree_on_one_secret(tmp_path):
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(8) as pool:
        secrets_seen = set(pool.map(lambda _: load_or_create_secret(tmp_path, None), range(32)))
    assert len(secrets_seen) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["url-signing.key"]

"""`aistack keys create | list | revoke`: API keys in the service's database."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aistack.auth.keys import KeyStore, Role
from aistack.config import get_settings
from aistack.store import PredictionStore

keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys (stored hashed).")
err = Console(stderr=True)


def _key_store() -> tuple[PredictionStore, KeyStore]:
    store = PredictionStore(get_settings().resolved_database_url)
    store.create_schema()
    return store, KeyStore(store.engine, cache_s=0)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who or what uses the key, unique")],
    role: Annotated[Role, typer.Option(help="predict | read | admin")] = Role.PREDICT,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    store, keys = _key_store()
    try:
        record, key = keys.create(name, role)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--name") from error
    finally:
        store.close()
    if json_out:
        print(json.dumps({"id": record.id, "name": record.name, "role": record.role, "key": key}))
        return
    err.print(f"created key [bold]{record.name}[/bold] (role {record.role}, id {record.id});")
    err.print("it is shown only now, keep it safe:")
    print(key)


@keys_app.command("list")
def list_keys() -> None:
    """Every key: id, name, role, created, revoked (never the key itself)."""
    store, keys = _key_store()
    try:
        rows = keys.list()
    finally:
        store.close()
    table = Table("id", "name", "role", "created (UTC)", "revoked (UTC)")
    for key in rows:
        table.add_row(
            key.id,
            key.name,
            key.role.value,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(name_or_id: Annotated[str, typer.Argument(help="the key's name or id")]) -> None:
    """Revoke a key; running servers refuse it within AISTACK_KEY_CACHE_S seconds."""
    store, keys = _key_store()
    try:
        key = keys.revoke(name_or_id)
    except LookupError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    finally:
        store.close()
    err.print(f"revoked key {key.name} ({key.id}) at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC")

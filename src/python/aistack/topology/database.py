"""The database that several service processes share, made ready before any of them starts."""

from __future__ import annotations

from aistack.fhir.resource_store import ResourceStore
from aistack.store import PredictionStore


def prepare_database(database_url: str) -> None:
    """Create every table the service uses (the FHIR facade's too), if missing.

    Processes that start together on a new database would each try to create them and
    collide ("table already exists"); one creation before they start avoids that.
    """
    store = PredictionStore(database_url)
    try:
        store.create_schema()
        ResourceStore(store.engine).create_schema()
    finally:
        store.close()

"""Settings from the environment (``AISTACK_*``), in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Settings(BaseSettings):
    """Everything a deployment may change; defaults suit `make run` from a clone."""

    model_config = SettingsConfigDict(env_prefix="AISTACK_", env_file=None)

    model_dir: Path = Field(PROJECT_ROOT / "models" / "covid19", description="TF Serving layout")
    model_name: str = "covid19"
    model_version: int | None = Field(None, description="None serves the highest version")
    var_dir: Path = Field(PROJECT_ROOT / "var", description="images, heatmaps and the database")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in var")
    file_retention_hours: float = Field(
        168, description="uploaded images and heatmaps older than this are deleted"
    )
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    covid_threshold: float = 0.65
    heatmap_alpha: float = 0.5
    max_batch_size: int = Field(
        1,
        description="above 1, concurrent requests share model calls (inference.batcher); "
        "off by default: no gain measured for the committed model on 2 cores",
    )
    batch_timeout_ms: float = 2.0
    host: str = "127.0.0.1"
    port: int = 8088

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'aistack.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

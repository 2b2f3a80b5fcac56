"""Signed, expiring URLs for stored files (uploads, heatmaps, overlays).

A response hands its caller links that work without a key header for ``ttl_s`` seconds,
which is what an ``<img src>`` or a 2020 client fetching ``Output_Heatmap`` needs; any
other fetch of a stored file needs a key that may read it.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

SECRET_FILE = "url-signing.key"


def load_or_create_secret(var_dir: Path, configured: str | None) -> str:
    """The configured secret, else one generated once and kept (0600) in ``var_dir``.

    Replicas sharing a VAR_DIR agree on one (created atomically); replicas on different
    machines behind one balancer must share it through AISTACK_URL_SIGNING_KEY.
    """
    if configured:
        return configured
    path = var_dir / SECRET_FILE
    if path.is_file():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    descriptor, staging_name = tempfile.mkstemp(dir=var_dir, prefix=f".{SECRET_FILE}.")  # 0600
    staging = Path(staging_name)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret)
    try:
        os.link(staging, path)  # atomic: of replicas starting together, one secret wins
    except FileExistsError:
        pass
    finally:
        staging.unlink()
    return path.read_text().strip()


class UrlSigner:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._signer = TimestampSigner(secret, salt="aistack.static-file")
        self.ttl_s = ttl_s

    def token(self, path: str) -> str:
        """A token for ``path`` (``kind/name``), to go in the URL's ``token`` parameter."""
        signed = self._signer.sign(path).decode("ascii")
        return signed[len(path) + 1 :]  # the path is in the URL already

    def valid(self, path: str, token: str | None) -> bool:
        if not token:
            return False
        try:
            self._signer.unsign(f"{path}.{token}", max_age=self.ttl_s)
        except (SignatureExpired, BadSignature):
            return False
        return True

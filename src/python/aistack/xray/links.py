"""Absolute and signed URLs for responses, built without a web framework.

Both runtimes answer with the same links: under the configured public base (never under the
request's Host), stored files signed so that their holder may fetch them for a while.
"""

from __future__ import annotations

from urllib.parse import quote

from aistack.auth.signing import UrlSigner


class FileLinks:
    def __init__(self, public_base_url: str, signer: UrlSigner) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self.signer = signer

    def url(self, path: str) -> str:
        """An absolute URL under the public base; ``path`` starts with ``/``."""
        return f"{self.public_base_url}{path}"

    def file_url(self, kind: str, name: str | None) -> str | None:
        """A stored file's signed URL (``/static/<kind>/<name>?token=``); None for no file."""
        if name is None:
            return None
        token = self.signer.token(f"{kind}/{name}")
        return self.url(f"/static/{kind}/{quote(name)}?token={token}")

"""Who may call what: API keys with roles, signed stored-file URLs, per-client rate limits.

Framework-free, so the standalone app and the IRIS runtime enforce the same rules.
"""

from aistack.auth.keys import ApiKey, KeyStore, Permission, Principal, Role

__all__ = ["ApiKey", "KeyStore", "Permission", "Principal", "Role"]

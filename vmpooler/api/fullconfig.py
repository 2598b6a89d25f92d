"""GET /api/v3/full_config: the whole configuration as loaded, in 3.x's shape
(``{"full_config": {...}, "status": {"ok": true}}``), with every secret redacted.

3.x answers with every password in it; here any value under a key that names a secret (password,
secret, token, hash, key), every user's password hash, and the password in any
URL are replaced by ``REDACTED``.
"""
from __future__ import annotations

import dataclasses
import enum
import re
import time

from vmpooler.api.base import BaseHandler

REDACTED = "<redacted>"
#: a key names a secret when its last word does (``service_password``, ``api_token``, ``access_key``;
#: not ``auth_token_failures_per_minute`` nor ``key_file``)
_SECRET_WORDS = {"pass", "passwd", "password", "passphrase", "secret", "token", "hash", "credential", "credentials",
                 "key", "apikey", "secrets", "passwords", "tokens", "keys", "hashes"}
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def redacted(value, key: str = ""):
    """``value`` (JSON-like) with secrets replaced; ``key`` is the name it is found under."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        keys = {k: k.value if isinstance(k, enum.Enum) else str(k) for k in value}
        return {keys[k]: redacted(v, keys[k]) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redacted(item, key) for item in value]
    if value is not None and re.split(r"[^a-z]+", key.lower().strip(":_"))[-1] in _SECRET_WORDS:
        return REDACTED
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1:" + REDACTED + "@", value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, re.Pattern):
        return value.pattern
    return str(value)


def _auth(auth):
    if auth is None:
        return None
    shown = dict(auth)
    if isinstance(shown.get("users"), dict):  # user name -> password hash
        shown["users"] = {user: REDACTED for user in shown["users"]}
    return redacted(shown)


def full_config(context) -> dict:
    config = context.config
    body = {
        "config": redacted(config.settings),
        "pools": [redacted(dict(pool.raw)) for pool in config.pools],
        "providers": {name: redacted(dict(provider.raw)) for name, provider in config.providers.items()},
        "dns_configs": {name: redacted(dict(dns.raw)) for name, dns in config.dns.items()},
        "auth": _auth(config.auth),
        "tagfilter": redacted(config.tagfilter),
        "database": {"url": redacted(config.database_url)},
        "rate_limits": redacted(config.rate_limits),
        "pool_names": [pool.name for pool in config.pools],
        "uptime": round(time.time() - context.started_at, 1),
    }
    if config.prometheus is not None:
        body["prometheus"] = redacted(config.prometheus)
    return body


class FullConfigHandler(BaseHandler):
    def get(self) -> None:
        self.reply({"full_config": full_config(self.context), "status": {"ok": True}})

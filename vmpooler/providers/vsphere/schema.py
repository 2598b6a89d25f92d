"""The vSphere provider's configuration: the keys it reads, their checks, and the parsed form.

``validate_options`` and ``validate_pool`` return problems naming their key, as the config loader
expects; ``ProviderOptions.parse`` turns an already validated section plus the global settings
into typed values with the defaults applied.
"""
from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any, Mapping, Optional

from vmpooler.config import coerce

DEFAULT_PORT = 443
DEFAULT_POOL_TIMEOUT = 60
DEFAULT_VSPHERE_TIMEOUT = 60
DEFAULT_READY_CHECK_PORT = 22

# key -> kind, as understood by vmpooler.config.coerce
_OPTION_KINDS = {
    "server": "str",
    "username": "str",
    "password": "str",
    "insecure": "bool",
    "datacenter": "str",
    "connection_pool_size": "int",
    "connection_pool_timeout": "number",
    "vsphere_timeout": "number",
    "purge_unconfigured_folders": "bool",
    # the name the original provider reads; kept so existing configurations keep working
    "purge_unconfigured_resources": "bool",
    "folder_whitelist": "list",
}
_REQUIRED_OPTIONS = ("server", "username", "password")
_POSITIVE_OPTIONS = ("connection_pool_size", "connection_pool_timeout", "vsphere_timeout")

PROVIDER_KEYS = frozenset({"provider_class", *_OPTION_KINDS})
POOL_KEYS = frozenset({"create_linked_clone", "ready_check_port"})


def _typed(kind: str, value: Any, key: str, problems: list):
    """``value`` coerced to ``kind``; None (and a problem naming ``key``) when it cannot be."""
    try:
        return coerce(kind, value)
    except ValueError as exc:
        problems.append(f"{key}: {exc}")
        return None


def split_server(server: str) -> tuple:
    """``host`` or ``host:port`` (``[v6]:port`` too) as (host, port); ValueError when malformed."""
    parts = urllib.parse.urlsplit("//" + server.strip())
    port = parts.port  # raises ValueError for a port that is not a number in range
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be a host name or host:port, not {server!r}")
    return parts.hostname, port or DEFAULT_PORT


def validate_options(options: Mapping[str, Any]) -> list:
    problems = []
    for key in _REQUIRED_OPTIONS:
        if options.get(key) in (None, ""):
            problems.append(f"{key}: required")
    for key, kind in _OPTION_KINDS.items():
        if options.get(key) is None:
            continue
        value = _typed(kind, options[key], key, problems)
        if key in _POSITIVE_OPTIONS and value is not None and value <= 0:
            problems.append(f"{key}: must be greater than 0, not {options[key]!r}")
    server = options.get("server")
    if isinstance(server, str) and server:
        try:
            split_server(server)
        except ValueError as exc:
            problems.append(f"server: {exc}")
    return problems


def validate_pool(pool: Mapping[str, Any]) -> list:
    problems = []
    for key in ("folder", "datastore"):
        if pool.get(key) in (None, ""):
            problems.append(f"{key}: required for a vSphere pool")
    if pool.get("create_linked_clone") is not None:
        _typed("bool", pool["create_linked_clone"], "create_linked_clone", problems)
    if pool.get("ready_check_port") is not None:
        port = _typed("int", pool["ready_check_port"], "ready_check_port", problems)
        if port is not None and not 0 <= port <= 65535:
            problems.append(f"ready_check_port: must be between 0 (no check) and 65535, not {port}")
    return problems


def linked_clone(pool_options: Mapping[str, Any], default: bool) -> bool:
    """Linked clones follow the global setting unless the pool says ``create_linked_clone: false``."""
    return default and coerce("bool", pool_options.get("create_linked_clone")) is not False


def ready_check_port(pool_options: Mapping[str, Any]) -> int:
    """The TCP port that must accept a connection before a VM is ready; 0 disables the check."""
    port = coerce("int", pool_options.get("ready_check_port"))
    return DEFAULT_READY_CHECK_PORT if port is None else port


@dataclasses.dataclass(frozen=True)
class ProviderOptions:
    """Everything the provider reads from its section and the global settings, typed."""

    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    insecure: bool = False
    datacenter: Optional[str] = None
    pool_size: int = 2
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    vsphere_timeout: float = DEFAULT_VSPHERE_TIMEOUT
    max_tries: int = 3
    retry_factor: float = 10
    purge_unconfigured: bool = False
    folder_whitelist: tuple = ()
    create_folders: bool = False
    create_linked_clones: bool = True
    create_template_delta_disks: bool = False
    domain: Optional[str] = None

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORT else f"{host}:{self.port}"

    @classmethod
    def parse(cls, options: Mapping[str, Any], settings: Mapping[str, Any]) -> "ProviderOptions":
        """Typed options from a section that ``validate_options`` found no problem in."""
        value = lambda key, default=None: (default if options.get(key) is None
                                           else coerce(_OPTION_KINDS[key], options[key]))
        host, port = split_server(str(options["server"]))
        task_limit = int(settings.get("task_limit") or 1)
        purge = (value("purge_unconfigured_folders", False) or value("purge_unconfigured_resources", False)
                 or bool(settings.get("purge_unconfigured_folders")))
        return cls(
            host=host, port=port, username=value("username"), password=value("password"),
            insecure=value("insecure", False), datacenter=value("datacenter"),
            pool_size=value("connection_pool_size", max(2, task_limit)),
            pool_timeout=value("connection_pool_timeout", DEFAULT_POOL_TIMEOUT),
            vsphere_timeout=value("vsphere_timeout", DEFAULT_VSPHERE_TIMEOUT),
            max_tries=max(1, int(settings.get("max_tries") or 1)),
            retry_factor=float(settings.get("retry_factor") or 0),
            purge_unconfigured=purge, folder_whitelist=tuple(value("folder_whitelist", [])),
            create_folders=bool(settings.get("create_folders")),
            create_linked_clones=bool(settings.get("create_linked_clones", True)),
            create_template_delta_disks=bool(settings.get("create_template_delta_disks")),
            domain=settings.get("domain") or None,
        )

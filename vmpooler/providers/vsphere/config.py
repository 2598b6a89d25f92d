"""The vSphere provider's configuration: every key it reads (its section, its pool keys and the
global ``:config:`` keys that only it reads), their checks and defaults, and the typed options the
loader builds from them once, at load time.

It imports no pyVmomi: the configuration loader reads it to check a file without the provider.
"""
from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any, Mapping, Optional

from vmpooler.providers.base import ProviderSchema
from vmpooler.settings import Setting, read_settings

DEFAULT_PORT = 443

# The keys of a ``:providers: <name>:`` section whose provider_class is vsphere.
OPTION_SETTINGS = (
    Setting("server", "str", None, "vCenter host name, or `host:port` (port 443 by default)."),
    Setting("username", "str", None, "User to log in as."),
    Setting("password", "str", None, "Its password. Never logged or shown in an answer."),
    Setting("insecure", "bool", False, "Skip TLS certificate verification (self-signed vCenter)."),
    Setting("datacenter", "str", None, "Datacenter holding templates and pools; required here or on each "
            "pool (a pool's `datacenter` wins)."),
    Setting("connection_pool_size", "int", None, "Sessions kept open and shared by the threads (default: "
            "max(2, `task_limit`)); each is checked with `CurrentTime` before use and re-established on failure "
            "(`max_tries` attempts, `retry_factor` × attempt seconds apart)."),
    Setting("connection_pool_timeout", "number", 60, "Seconds a call waits for a free session before failing "
            "(transient)."),
    Setting("vsphere_timeout", "number", 60, "Seconds to wait for a vSphere task; a clone may take max(this, "
            "the pool's `timeout` in seconds)."),
    Setting("purge_unconfigured_folders", "bool", False, "Destroy VMs and sub-folders under the pools' base "
            "folders that no pool uses (also when the global setting is on)."),
    Setting("purge_unconfigured_resources", "bool", False, "The original provider's name for "
            "`purge_unconfigured_folders`; kept so existing files keep working."),
    Setting("folder_whitelist", "list", [], "Folder names the purge leaves alone."),
    Setting("resources_allowlist", "list", [], "2.1's name for `folder_whitelist` (both are honoured)."),
)
_REQUIRED_OPTIONS = ("server", "username", "password")
_POSITIVE_OPTIONS = ("connection_pool_size", "connection_pool_timeout", "vsphere_timeout")

# The ``:config:`` keys only this provider reads.
GLOBAL_SETTINGS = (
    Setting("clone_target", "str", None, "Default cluster to clone into.", "CLONE_TARGET"),
    Setting("create_folders", "bool", False, "Create missing pool folders.", "CREATE_FOLDERS"),
    Setting("create_linked_clones", "bool", True, "Clone with linked clones.", "CREATE_LINKED_CLONES"),
    Setting("create_template_delta_disks", "bool", False, "Add delta disks to templates.",
            "CREATE_TEMPLATE_DELTA_DISKS"),
    Setting("purge_unconfigured_folders", "bool", False, "Destroy VMs in folders no pool uses.",
            "PURGE_UNCONFIGURED_FOLDERS"),
    Setting("max_tries", "int", 3, "Connection attempts to vCenter before giving up.", "MAX_TRIES", 1),
    Setting("retry_factor", "number", 10, "Seconds multiplied by the attempt number between connection "
            "attempts.", "RETRY_FACTOR", 0),
)

# The pool keys it reads beyond the core ones.
POOL_SETTINGS = (
    Setting("folder", "str", None, "Folder of the pool's VMs under the datacenter's `vm` folder (required; "
            "created level by level when `create_folders` is true)."),
    Setting("datastore", "str", None, "Datastore of the clones (required)."),
    Setting("datacenter", "str", None, "Datacenter (default: the provider's)."),
    Setting("clone_target", "str", None, "Cluster whose root resource pool receives the clones (default: the "
            "global `clone_target`, else the template's resource pool)."),
    Setting("create_linked_clone", "bool", None, "false makes full clones of this pool even when "
            "`create_linked_clones` is on."),
    Setting("ready_check_port", "int", 22, "TCP port of `<vm>.<domain>` (the pool's domain; the VM's IP when it "
            "has none) that must accept a connection before the VM is ready; 0 skips the check.", None, 0),
    Setting("snapshot_mainMem_ioBlockPages", "str", None, "The clones' `mainMem.ioBlockPages` option (3.x; with "
            "`snapshot_mainMem_iowait`, tunes snapshot performance: VMware KB 76687)."),
    Setting("snapshot_mainMem_iowait", "str", None, "The clones' `mainMem.iowait` option (3.x)."),
)
#: pool keys that become the clones' extra configuration options, by option name
EXTRA_CONFIG_KEYS = {"mainMem.ioBlockPages": "snapshot_mainMem_ioBlockPages", "mainMem.iowait": "snapshot_mainMem_iowait"}


def split_server(server: str) -> tuple:
    """``host`` or ``host:port`` (``[v6]:port`` too) as (host, port); ValueError when malformed."""
    parts = urllib.parse.urlsplit("//" + server.strip())
    port = parts.port  # raises ValueError for a port that is not a number in range
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be a host name or host:port, not {server!r}")
    return parts.hostname, port or DEFAULT_PORT


@dataclasses.dataclass(frozen=True)
class ProviderOptions:
    """Everything the provider reads from its section and the global settings, typed."""

    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    insecure: bool
    datacenter: Optional[str]
    pool_size: int
    pool_timeout: float
    vsphere_timeout: float
    max_tries: int
    retry_factor: float
    purge_unconfigured: bool
    folder_whitelist: tuple
    clone_target: Optional[str]
    create_folders: bool
    create_linked_clones: bool
    create_template_delta_disks: bool

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORT else f"{host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class PoolOptions:
    """A vSphere pool's keys, typed. Unset ones (None) take the provider's value when used."""

    folder: str
    datastore: str
    datacenter: Optional[str]
    clone_target: Optional[str]
    create_linked_clone: Optional[bool]
    ready_check_port: int
    #: extra configuration options every clone gets (3.x's snapshot_mainMem_* keys), by option name
    extra_config: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)


def parse_options(section: Mapping[str, Any], values: Mapping[str, Any], settings,
                  problems: list) -> Optional[ProviderOptions]:
    """The typed options of a section, or None (and each problem, naming its key). ``values``
    are the GLOBAL_SETTINGS as loaded; ``settings`` the core ones (task_limit)."""
    found = [f"{key}: required" for key in _REQUIRED_OPTIONS if section.get(key) in (None, "")]
    raw = read_settings(OPTION_SETTINGS, section, found)
    for key in _POSITIVE_OPTIONS:
        if section.get(key) is not None and raw[key] is not None and raw[key] <= 0:
            found.append(f"{key}: must be greater than 0, not {section[key]!r}")
    host, port = None, None
    if raw["server"]:
        try:
            host, port = split_server(raw["server"])
        except ValueError as exc:
            found.append(f"server: {exc}")
    problems.extend(found)
    if found:
        return None
    assert host is not None and port is not None  # else found says the server is required
    return ProviderOptions(
        host=host, port=port, username=raw["username"], password=raw["password"], insecure=raw["insecure"],
        datacenter=raw["datacenter"],
        pool_size=raw["connection_pool_size"] or max(2, settings.task_limit),
        pool_timeout=raw["connection_pool_timeout"], vsphere_timeout=raw["vsphere_timeout"],
        max_tries=values["max_tries"], retry_factor=values["retry_factor"],
        purge_unconfigured=(raw["purge_unconfigured_folders"] or raw["purge_unconfigured_resources"]
                            or values["purge_unconfigured_folders"] or settings.purge_unconfigured_resources),
        folder_whitelist=tuple(raw["folder_whitelist"]) + tuple(raw["resources_allowlist"]),
        clone_target=values["clone_target"],
        create_folders=values["create_folders"], create_linked_clones=values["create_linked_clones"],
        create_template_delta_disks=values["create_template_delta_disks"])


def parse_pool(pool: Mapping[str, Any], problems: list) -> Optional[PoolOptions]:
    """A pool's typed options, or None (and each problem, naming its key)."""
    found = [f"{key}: required for a vSphere pool" for key in ("folder", "datastore") if pool.get(key) in (None, "")]
    raw = read_settings(POOL_SETTINGS, pool, found)
    if raw["ready_check_port"] > 65535:
        found.append(f"ready_check_port: must be between 0 (no check) and 65535, not {raw['ready_check_port']}")
    problems.extend(found)
    if found:
        return None
    return PoolOptions(folder=raw["folder"].strip("/"), datastore=raw["datastore"], datacenter=raw["datacenter"],
                       clone_target=raw["clone_target"], create_linked_clone=raw["create_linked_clone"],
                       ready_check_port=raw["ready_check_port"],
                       extra_config={option: raw[key] for option, key in EXTRA_CONFIG_KEYS.items()
                                     if raw[key] is not None})


class VSphereSchema(ProviderSchema):
    PROVIDER_KEYS = frozenset({"provider_class", *(s.key for s in OPTION_SETTINGS)})
    GLOBAL_SETTINGS = GLOBAL_SETTINGS
    POOL_SETTINGS = POOL_SETTINGS

    def provider_options(self, section, values, settings, problems):
        return parse_options(section, values, settings, problems)

    def pool_options(self, pool, options, problems):
        return parse_pool(pool, problems)


SCHEMA = VSphereSchema()

"""The libvirt provider's configuration: its section (``uri``), its pool keys (``storage_pool``,
``network``, ``create_linked_clone``, ``ready_check_port``) and the typed options the loader
builds from them once, at load time.

It imports no libvirt: the configuration loader reads it to check a file without the library.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Optional

from vmpooler.providers.base import ProviderSchema
from vmpooler.settings import Setting, read_settings

DEFAULT_URI = "qemu:///system"

# The keys of a ``:providers: <name>:`` section whose provider_class is libvirt.
OPTION_SETTINGS = (
    Setting("uri", "str", DEFAULT_URI, "libvirt connection URI of the hypervisor: `qemu:///system` on this "
            "machine, `qemu+ssh://user@host/system` for a remote one (an SSH key, no password prompt)."),
    Setting("purge_unconfigured_resources", "bool", False, "Destroy domains this provider tagged for pools "
            "that are no longer configured."),
    Setting("purge_unconfigured_folders", "bool", False, "The vSphere provider's name for "
            "`purge_unconfigured_resources`; accepted so both spellings work."),
)

# The pool keys it reads beyond the core ones.
POOL_SETTINGS = (
    Setting("storage_pool", "str", None, "libvirt storage pool of the clones' volumes (default: the pool "
            "holding the template's first disk)."),
    Setting("network", "str", None, "libvirt network the clones' NICs join (default: the template's)."),
    Setting("create_linked_clone", "bool", True, "true: each clone's disks are new qcow2 volumes backed by the "
            "template's (seconds, little space); false: full copies of the template's disks."),
    Setting("ready_check_port", "int", 22, "TCP port of `<vm>.<domain>` (or the address from the network's DHCP "
            "leases or the guest agent when there is no `domain` or it does not resolve) that must accept a "
            "connection before the VM is ready; 0 skips the check.", None, 0),
)

# What libvirt accepts in a URI's scheme: driver, optionally +transport
_URI = re.compile(r"^[a-z][a-z0-9]*(\+[a-z0-9]+)?:(//.*)?$")


@dataclasses.dataclass(frozen=True)
class LibvirtOptions:
    uri: str
    purge_unconfigured: bool


@dataclasses.dataclass(frozen=True)
class LibvirtPool:
    storage_pool: Optional[str]
    network: Optional[str]
    create_linked_clone: bool
    ready_check_port: int


def parse_options(section: Mapping[str, Any], values: Mapping[str, Any], settings,
                  problems: list) -> Optional[LibvirtOptions]:
    found: list = []
    raw = read_settings(OPTION_SETTINGS, section, found)
    uri = raw["uri"]
    if uri is not None and not _URI.match(uri.strip()):
        found.append(f"uri: must be a libvirt URI such as qemu:///system or qemu+ssh://host/system, not {uri!r}")
    problems.extend(found)
    if found:
        return None
    return LibvirtOptions(uri=uri.strip(),
                          purge_unconfigured=raw["purge_unconfigured_resources"] or raw["purge_unconfigured_folders"])


def parse_pool(pool: Mapping[str, Any], problems: list) -> Optional[LibvirtPool]:
    found: list = []
    raw = read_settings(POOL_SETTINGS, pool, found)
    if raw["ready_check_port"] > 65535:
        found.append(f"ready_check_port: must be between 0 (no check) and 65535, not {raw['ready_check_port']}")
    for key in ("storage_pool", "network"):
        if raw[key] is not None and not raw[key].strip():
            found.append(f"{key}: must not be empty (leave it out for the template's)")
    problems.extend(found)
    if found:
        return None
    return LibvirtPool(storage_pool=raw["storage_pool"], network=raw["network"],
                       create_linked_clone=raw["create_linked_clone"], ready_check_port=raw["ready_check_port"])


class LibvirtSchema(ProviderSchema):
    PROVIDER_KEYS = frozenset({"provider_class", *(s.key for s in OPTION_SETTINGS)})
    POOL_SETTINGS = POOL_SETTINGS

    def provider_options(self, section, values, settings, problems):
        return parse_options(section, values, settings, problems)

    def pool_options(self, pool, options, problems):
        return parse_pool(pool, problems)


SCHEMA = LibvirtSchema()

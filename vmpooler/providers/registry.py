"""The provider classes by ``provider_class`` name, imported only when used.

Each provider is a package with a ``config`` module (its ProviderSchema, as ``SCHEMA``: the keys it
reads) and a ``provider`` module (the class). The configuration loader asks only for schemas, so
checking a file that uses the dummy provider never imports pyVmomi; the service imports the
provider modules of the providers it is configured with, when it builds them.
"""
from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class ProviderModule:
    package: str  # holds config.py (the schema) and provider.py
    class_name: str  # the provider class in provider.py


class Registry:
    def __init__(self, known: dict):
        self._known = dict(known)

    def names(self) -> list:
        return sorted(self._known)

    def schema(self, provider_class: str):
        """The class's ProviderSchema, or None when no provider has that name."""
        known = self._known.get(provider_class)
        if known is None:
            return None
        return importlib.import_module(f"{known.package}.config").SCHEMA

    def provider_class(self, provider_class: str) -> type:
        known = self._known[provider_class]
        return getattr(importlib.import_module(f"{known.package}.provider"), known.class_name)

    def build(self, config) -> dict:
        """One provider instance per configured provider, by name (``config.providers``)."""
        return {name: self.provider_class(entry.provider_class)(name, entry.options)
                for name, entry in config.providers.items()}


REGISTRY = Registry({
    "dummy": ProviderModule("vmpooler.providers.dummy", "DummyProvider"),
    "vsphere": ProviderModule("vmpooler.providers.vsphere", "VSphereProvider"),
    "libvirt": ProviderModule("vmpooler.providers.libvirt", "LibvirtProvider"),
})

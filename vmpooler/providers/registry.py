"""The provider classes by ``provider_class`` name, found through the entry-point group
``vmpooler.providers`` and imported only when used.

Each entry point names a package holding a ``config`` module (its ProviderSchema, as ``SCHEMA``:
the keys it reads) and a ``provider`` module (the class: ``PROVIDER`` when the module names it,
else the one Provider subclass it defines). Ours register in setup.py exactly as a separately
installed ``vmpooler-provider-proxmox`` would (docs/providers.md). The configuration loader asks only
for schemas, so checking a file never imports a backend's library (pyVmomi, libvirt-python); the
service imports the provider modules of the providers it is configured with, when it builds them.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Mapping, Optional

from vmpooler.plugins import PROVIDERS_GROUP, discover
from vmpooler.providers.base import Provider

#: ours, for a source checkout run without being installed (no entry points registered); an
#: installed distribution's entry points name the same packages
BUILTIN = {
    "dummy": "vmpooler.providers.dummy",
    "vsphere": "vmpooler.providers.vsphere",
    "libvirt": "vmpooler.providers.libvirt",
}


class Registry:
    def __init__(self, known: Mapping[str, str]):
        """``known``: provider_class name -> the package that holds its config.py and provider.py."""
        self._known = dict(known)

    @classmethod
    def discover(cls, group: str = PROVIDERS_GROUP) -> "Registry":
        """The providers the installed distributions register (ours among them)."""
        found = {name: target.split(":", 1)[0] for name, target in discover(group).items()}
        return cls({**BUILTIN, **found})

    def names(self) -> list:
        return sorted(self._known)

    def package(self, provider_class: str) -> Optional[str]:
        return self._known.get(provider_class)

    def schema(self, provider_class: str):
        """The class's ProviderSchema, or None when no provider has that name."""
        package = self._known.get(provider_class)
        if package is None:
            return None
        return importlib.import_module(f"{package}.config").SCHEMA

    def provider_class(self, provider_class: str) -> type:
        module = importlib.import_module(f"{self._known[provider_class]}.provider")
        named = getattr(module, "PROVIDER", None)
        if named is not None:
            return named
        defined = [value for value in vars(module).values()
                   if inspect.isclass(value) and issubclass(value, Provider) and value.__module__ == module.__name__
                   and not inspect.isabstract(value)]
        if len(defined) != 1:
            raise TypeError(f"{module.__name__} defines {len(defined)} provider classes; name the one to use "
                            f"as PROVIDER")
        return defined[0]

    def build(self, config) -> dict:
        """One provider instance per configured provider, by name (``config.providers``)."""
        return {name: self.provider_class(entry.provider_class)(name, entry.options)
                for name, entry in config.providers.items()}


REGISTRY = Registry.discover()

"""The DNS plugin classes by ``dns_class`` name, found through the ``vmpooler.dns`` entry-point
group (vmpooler.plugins) and imported only when used: the configuration loader asks for a
class's schema (its package's ``config.py``), the service for the plugin (``plugin.py``).

A plugin shipped as its own package registers the same way ours do in setup.py::

    entry_points={"vmpooler.dns": ["gcp = vmpooler_dns_gcp"]}
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable, Dict

from vmpooler.plugins import DNS_GROUP, discover


class DnsRegistry:
    def __init__(self, known: Callable[[], Dict[str, str]]):
        self._known = functools.lru_cache(maxsize=None)(known)  # discovered once, when first asked

    def names(self) -> list:
        return sorted(self._known())

    def schema(self, dns_class: str):
        """The class's DnsSchema, or None when no plugin has that name."""
        package = self._known().get(dns_class)
        return None if package is None else importlib.import_module(f"{package}.config").SCHEMA

    def plugin_class(self, dns_class: str) -> type:
        return importlib.import_module(f"{self._known()[dns_class]}.plugin").PLUGIN

    def build(self, config) -> dict:
        """One plugin per ``:dns_configs:`` entry, by its name (``config.dns``)."""
        return {name: self.plugin_class(entry.dns_class)(entry) for name, entry in config.dns.items()}


def _packages(group: str) -> Dict[str, str]:
    return {name: target.split(":", 1)[0] for name, target in discover(group).items()}


REGISTRY = DnsRegistry(functools.partial(_packages, DNS_GROUP))


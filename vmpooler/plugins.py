"""Plugins found through Python entry points: how providers and DNS plugins are discovered.

A package ships a plugin by naming it in an entry-point group of its ``setup.py`` or
``pyproject.toml``; ours register the same way, so they prove the interface others use::

    entry_points={"vmpooler.providers": ["proxmox = vmpooler_provider_proxmox"]}

The entry point names a package (or module); what that package must hold is the group's business
(for providers: ``config.py`` with ``SCHEMA`` and ``provider.py``). Nothing is imported here: a
plugin is loaded only when something asks for it by name, so a configuration that never names a
plugin never imports it.
"""
from __future__ import annotations

import importlib.metadata
from typing import Dict

#: the entry-point groups vmpooler reads
PROVIDERS_GROUP = "vmpooler.providers"
DNS_GROUP = "vmpooler.dns"


def discover(group: str) -> Dict[str, str]:
    """``{name: target}`` for every entry point of ``group`` in the installed distributions,
    ``target`` being the ``module`` or ``module:attribute`` the entry point names. When two
    distributions claim one name, the first found wins (importlib's order)."""
    found: Dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=group):
        found.setdefault(entry.name, entry.value)
    return found

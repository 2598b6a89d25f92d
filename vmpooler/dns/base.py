"""The DNS plugin interface: what the pool manager asks of a DNS service for a pool's VMs.

A pool names a DNS setup (``dns_plugin: <name>``, an entry of ``:dns_configs:``); the setup
names its plugin class (``dns_class``) and the domain that makes the pool's FQDNs. A plugin that
``registers`` records is asked to add a VM's A record before the VM is handed out and to remove
it when the VM is destroyed; one that does not (``dynamic-dns``: the network's own dynamic DNS
keeps the records) is never called.

Like providers, plugins are synchronous and may block: the manager calls them only from a worker
thread, never on the IOLoop. They know nothing of HTTP, the database or the configuration
loader: they take their typed options and a name.
"""
from __future__ import annotations

import abc
from typing import Any, Mapping

from vmpooler.model import DnsConfig


class DnsError(Exception):
    """Base of every error a DNS plugin raises. ``transient`` ones (a timeout, a server that
    refused for now) are retried as the retry policy says; permanent ones (a bad key, a zone the
    server does not serve) give the work up at once."""

    transient = True


class PermanentDnsError(DnsError):
    transient = False


class DnsSchema:
    """What the configuration loader asks of a plugin class: the keys of its ``:dns_configs:``
    entry beyond ``dns_class`` and ``domain`` (as ``vmpooler.settings.Setting`` rows, so that
    docs and ``check-config`` see their types and defaults) and their typing, once, at load time.
    Problems are appended to ``problems`` naming the key (``server: required``); the loader
    prefixes where the entry is."""

    #: the keys of its entry, as Setting rows (others are warned about)
    SETTINGS: tuple = ()

    def options(self, section: Mapping[str, Any], domain: str, problems: list) -> Any:
        """The typed options of one entry (``domain`` is the entry's, already checked)."""
        return None


class DnsPlugin(abc.ABC):
    """Base class of DNS plugins: ``config`` is its ``:dns_configs:`` entry (model.DnsConfig,
    with ``options`` typed by the plugin's schema)."""

    #: False for plugins that keep no records (the manager then never calls them)
    registers = True

    def __init__(self, config: DnsConfig):
        self.config = config
        self.name = config.name

    @abc.abstractmethod
    def create_or_replace_record(self, hostname: str, ip: str) -> None:
        """Make ``<hostname>.<domain>`` resolve to ``ip`` (and only to it). Idempotent."""

    @abc.abstractmethod
    def delete_record(self, hostname: str) -> None:
        """Remove the records of ``<hostname>.<domain>``. A name without records is no error."""

    def close(self) -> None:
        """Release connections; called once at shutdown."""

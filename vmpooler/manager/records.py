"""The DNS records of the VMs (vmpooler/dns/): a pool whose DNS setup keeps records (``rfc2136``,
not ``dynamic-dns``) gets each VM's record added before the VM is handed out and removed when it
is destroyed, as the original's 3.x does.

- **Adding** happens while the VM boots: once its address is known (from the clone, or asked of
  the provider) the record is made, and only then is the VM probed for readiness (a probe of
  ``<vm>.<domain>`` needs the record) and marked ready. A failed addition counts as a failed
  clone attempt (3.x fails the clone): retried with the retry policy's backoff, the VM waiting
  in pending meanwhile; given up after ``clone_attempts`` (or at once when permanent, e.g. a
  refused key), the VM is completed and destroyed, never handed out without its record.
- **Removing** is part of the destroy: after the provider destroyed the VM its record is
  removed; a failed removal is a failed destroy attempt (retried; after ``destroy_attempts`` the
  VM is ``failed`` and an operator must remove the record).
- A VM that vanished from the provider (``gone``) has its record removed once, best effort.

Plugin calls run in the provider thread pool, never on the IOLoop, and not once this process no
longer leads (``Fenced``). What this process registered is remembered (name -> address), so a
ready VM's periodic check updates its record only when its address changed (a new leader
re-registers each ready VM once: an update that replaces a record with itself is harmless).
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

from tornado.ioloop import IOLoop

from vmpooler.dns.base import DnsError, DnsPlugin
from vmpooler.manager.runner import Fenced

log = logging.getLogger("vmpooler.manager")


class Records:
    def __init__(self, plugins: dict, executor, may_act: Callable[[], bool]):
        #: name under :dns_configs: -> its DnsPlugin
        self.plugins = plugins
        self.executor = executor
        self.may_act = may_act
        #: VM name -> the address this process last registered for it
        self.registered: dict = {}

    def plugin(self, pool) -> Optional[DnsPlugin]:
        """The plugin keeping the pool's records; None when nothing is kept (no DNS setup, or one
        such as dynamic-dns that registers nothing)."""
        plugin = self.plugins.get(pool.dns_plugin) if pool.dns_plugin else None
        return plugin if plugin is not None and plugin.registers else None

    async def register(self, pool, name: str, ip: str) -> None:
        """Make ``<name>.<domain>`` resolve to ``ip`` (nothing when the pool keeps no records or
        this process registered that address already). Raises DnsError."""
        plugin = self.plugin(pool)
        if plugin is None or self.registered.get(name) == ip:
            return
        await self._call(plugin, lambda: plugin.create_or_replace_record(name, ip))
        self.registered[name] = ip
        log.info("[%s] %s: DNS record %s -> %s", pool.name, name, pool.fqdn(name), ip)

    async def remove(self, pool, name: str) -> None:
        """Remove ``<name>.<domain>``'s record (a name without one is no error). Raises DnsError."""
        plugin = self.plugin(pool)
        if plugin is None:
            return
        await self._call(plugin, lambda: plugin.delete_record(name))
        self.registered.pop(name, None)
        log.info("[%s] %s: DNS record %s removed", pool.name, name, pool.fqdn(name))

    async def forget(self, pool, name: str) -> None:
        """``remove``, best effort: for a VM that vanished (nothing retries it)."""
        try:
            await self.remove(pool, name)
        except DnsError as error:
            log.warning("[%s] %s: its DNS record could not be removed: %s", pool.name, name, error)

    async def _call(self, plugin: DnsPlugin, operation: Callable[[], None]) -> None:
        if not self.may_act():
            raise Fenced(f"not calling DNS {plugin.name}: this process no longer runs the pool manager")
        try:
            await IOLoop.current().run_in_executor(self.executor, operation)
        except DnsError:
            raise
        except Exception as error:  # a plugin bug: keep the manager alive, retry as transient
            log.exception("DNS plugin %s raised unexpectedly", plugin.name)
            raise DnsError(f"DNS {plugin.name} failed unexpectedly: {error!r}") from error

    def close(self) -> None:
        for plugin in self.plugins.values():
            try:
                plugin.close()
            except Exception:  # closing is best effort
                log.exception("DNS plugin %s: close failed", plugin.name)

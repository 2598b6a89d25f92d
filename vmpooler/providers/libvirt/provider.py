"""The libvirt provider: pools of domains cloned from a shut-off template domain, through
libvirt-python (see docs/providers.md for the contract it keeps)."""
from __future__ import annotations

import contextlib
import datetime
import logging
import socket
from typing import Optional

import libvirt

from vmpooler.model import PoolConfig, VMInfo
from vmpooler.providers.base import PermanentError, Provider, ProviderError, VMExists, VMNotFound
from vmpooler.providers.libvirt import domain_xml, errors, inventory, volumes
from vmpooler.providers.libvirt.config import LibvirtOptions
from vmpooler.providers.libvirt.connection import Connections
from vmpooler.providers.shared import port_open

log = logging.getLogger(__name__)

_UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE


def resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except (socket.gaierror, UnicodeError):
        return False


class LibvirtProvider(Provider):
    """``options`` are the section's config.LibvirtOptions; each pool's ``provider_options`` its
    config.LibvirtPool."""

    def __init__(self, name: str, options: LibvirtOptions, open_connection=None):
        super().__init__(name, options)
        self.config = options
        self._connections = Connections(options.uri, open_connection or libvirt.open)
        self._last_error: Optional[tuple] = None

    # -- plumbing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self, what: str, not_found: Optional[type] = None):
        """This thread's connection, with every error raised in the block mapped to a
        ProviderError naming ``what`` (and remembered for health()); a connection that died is
        dropped, so the next call opens a new one."""
        conn = None
        try:
            with errors.translated(what, not_found):
                conn = self._connections.get()
                try:
                    yield conn
                except Exception as exc:
                    if errors.connection_lost(exc):
                        self._connections.lost(conn)
                    raise
        except ProviderError as exc:
            if not isinstance(exc, VMNotFound):
                self._last_error = (str(exc), datetime.datetime.now(datetime.timezone.utc))
            raise

    def _read(self, what: str, operation):
        """``operation(conn)`` for a call that only reads: tried once more on a fresh connection
        when the first one turns out dead (libvirtd restarted since it was opened), but not when
        the hypervisor stopped answering (a new connection would hang as well)."""
        try:
            with self._connection(what) as conn:
                return operation(conn)
        except errors.ConnectionLost as lost:
            if lost.unanswered:
                raise
            with self._connection(what) as conn:
                return operation(conn)

    @staticmethod
    def _domain(conn, name: str):
        """The domain ``name``, or None."""
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if errors.is_not_found(exc):
                return None
            raise

    def _pool_domain(self, conn, pool: PoolConfig, name: str):
        """Domain ``name`` when it is ours and in ``pool``; VMNotFound otherwise."""
        domain = self._domain(conn, name)
        tag = inventory.tag_of(domain) if domain is not None else None
        if tag is None or tag.pool != pool.name:
            raise VMNotFound(f"domain {name} of pool {pool.name} not found")
        return domain, tag

    # -- inventory -----------------------------------------------------------------------
    def list_vms(self, pool: PoolConfig) -> list:
        def listing(conn):
            found = []
            for domain, tag in inventory.tagged(conn):
                if tag.pool == pool.name:
                    try:
                        found.append(inventory.vm_info(domain, tag))
                    except libvirt.libvirtError as exc:
                        if not errors.is_not_found(exc):
                            raise  # one undefined while listed is gone: left out
            return found
        return self._read(f"listing pool {pool.name}", listing)

    def get_vm(self, pool: PoolConfig, name: str) -> Optional[VMInfo]:
        def reading(conn):
            try:
                domain, tag = self._pool_domain(conn, pool, name)
            except VMNotFound:
                return None
            running = inventory.is_running(domain)
            if not running:
                return inventory.vm_info(domain, tag, running=False)
            found = inventory.addresses(domain)
            return inventory.vm_info(domain, tag, running=True, ip=found[0] if found else None,
                                     hostname=inventory.lease_hostname(conn, domain.XMLDesc(0)))
        return self._read(f"reading VM {name}", reading)

    def is_ready(self, pool: PoolConfig, name: str) -> bool:
        port = pool.provider_options.ready_check_port
        named = pool.fqdn(name) if pool.domain else None
        #: the name to probe, when there is one that resolves (else the domain's addresses are)
        probe_name = named if port and named and resolves(named) else None

        def reading(conn):
            """(running, the addresses to probe: none when probing by name or not at all)"""
            domain, _tag = self._pool_domain(conn, pool, name)
            if not inventory.is_running(domain):
                return False, []
            return True, [] if probe_name or port == 0 else inventory.addresses(domain)

        if probe_name:
            # the port first: while a guest boots, its probes cost libvirtd nothing (it shares
            # the host's CPUs with the booting guests); an open port is then confirmed to be
            # this pool's running domain
            return port_open(probe_name, port) and self._read(f"checking VM {name}", reading)[0]
        running, found = self._read(f"checking VM {name}", reading)
        if not running or port == 0:
            return running
        # the connection is given back before probing: a booting guest must not hold it
        return any(port_open(address, port) for address in found)

    # -- life cycle ----------------------------------------------------------------------
    def create_vm(self, pool: PoolConfig, name: str) -> VMInfo:
        what = f"cloning {pool.template} as {name}"
        options = pool.provider_options
        with self._connection(what, not_found=PermanentError) as conn:
            existing = self._domain(conn, name)
            if existing is not None:
                tag = inventory.tag_of(existing)
                if tag is None or tag.pool != pool.name:
                    raise VMExists(f"{what}: a domain named {name} exists and is not this pool's")
                if inventory.is_running(existing):  # a clone that was done: a retry after a lost answer
                    return inventory.vm_info(existing, tag, running=True)
                self._remove(conn, existing, name)  # defined but never started: an interrupted clone
            template = self._template(conn, pool)
            template_description = template.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            template_disks = [disk for disk in domain_xml.disks(template_description) if disk.device == "disk"]
            if not template_disks:
                raise PermanentError(f"{what}: template {pool.template} has no disk")
            template_volumes = {disk.target: volumes.lookup_path(conn, disk) for disk in template_disks}
            missing = [disk.target for disk in template_disks if template_volumes[disk.target] is None]
            if missing:
                raise PermanentError(f"{what}: the template's disk {missing[0]} is in no storage pool libvirt knows")
            target_pool = volumes.storage_pool(conn, options.storage_pool, template_volumes[template_disks[0].target])
            keep = frozenset(volume.path() for volume in template_volumes.values())
            volumes.delete_remains(conn, name, keep)  # volumes of an interrupted clone of this name
            tag = domain_xml.Tag(provider=self.name, pool=pool.name, template=pool.template,
                                 created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            made: dict = {}
            try:
                for target, template_volume in template_volumes.items():
                    made[target] = volumes.create_clone(target_pool, name, target, template_volume,
                                                        options.create_linked_clone)
                domain = conn.defineXML(domain_xml.clone_xml(template_description, name, made, options.network, tag))
                domain.create()
            except BaseException:
                self._undo_clone(conn, name, keep)
                raise
        return VMInfo(name=name, powered_on=True, template=pool.template)

    def _template(self, conn, pool: PoolConfig):
        template = self._domain(conn, pool.template)
        if template is None:
            raise PermanentError(f"template domain {pool.template} not found")
        if template.isActive():
            raise PermanentError(f"template domain {pool.template} is running: shut it off (its disks are the "
                                 f"clones' backing files)")
        return template

    def _undo_clone(self, conn, name: str, keep: frozenset) -> None:
        """Best effort, after a failed clone: what it made goes (the next create or destroy of the
        name finishes the job if this fails too)."""
        with contextlib.suppress(Exception):
            domain = self._domain(conn, name)
            if domain is not None:
                self._remove(conn, domain, name)
        with contextlib.suppress(Exception):
            volumes.delete_remains(conn, name, keep)

    def destroy_vm(self, pool: PoolConfig, name: str) -> None:
        with self._connection(f"destroying VM {name}") as conn:
            domain = self._domain(conn, name)
            if domain is not None:
                tag = inventory.tag_of(domain)
                if tag is None or tag.pool != pool.name:
                    raise PermanentError(f"destroying VM {name}: domain {name} is not this pool's")
                self._remove(conn, domain, name)
            volumes.delete_remains(conn, name, self._volumes_in_use(conn))

    def _remove(self, conn, domain, name: str) -> None:
        """Stop ``domain``, delete every volume it used that no other domain uses (the
        template's stays), then undefine it with its snapshot metadata. In that order, a destroy
        interrupted anywhere (the service killed) leaves a tagged domain that the next reconcile
        finds and destroys again, never volumes that nothing lists."""
        description = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        try:
            if domain.isActive():
                domain.destroy()
        except libvirt.libvirtError as exc:
            if not errors.is_not_found(exc):
                raise
        in_use = self._volumes_in_use(conn, besides=name)
        for disk in domain_xml.disks(description):
            if disk.device != "disk" or not disk.path or disk.path in in_use:
                continue
            volume = volumes.lookup_path(conn, disk)
            if volume is not None:
                volumes.delete(volume)
            else:
                log.warning("VM %s: disk %s is in no storage pool; left in place", name, disk.path)
        try:
            domain.undefineFlags(_UNDEFINE_FLAGS)
        except libvirt.libvirtError as exc:
            if not errors.is_not_found(exc):
                raise
            log.info("domain %s was already gone", name)

    @staticmethod
    def _volumes_in_use(conn, besides: Optional[str] = None) -> frozenset:
        """The disk paths of every domain (but ``besides``)."""
        paths: set = set()
        for domain in conn.listAllDomains(0):
            if domain.name() == besides:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                description = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                paths.update(disk.path for disk in domain_xml.disks(description) if disk.path)
        return frozenset(paths)

    # -- snapshots and disks -------------------------------------------------------------
    def create_snapshot(self, pool: PoolConfig, name: str, snapshot: str) -> None:
        what = f"taking snapshot {snapshot} of {name}"
        with self._connection(what) as conn:
            domain, _tag = self._pool_domain(conn, pool, name)
            if snapshot in domain.snapshotListNames(0):
                raise PermanentError(f"{what}: {name} already has a snapshot of that name")
            # of a running domain, with its memory: a revert brings it back running as it was
            domain.snapshotCreateXML(domain_xml.snapshot_xml(snapshot), 0)

    def revert_snapshot(self, pool: PoolConfig, name: str, snapshot: str) -> None:
        what = f"reverting {name} to snapshot {snapshot}"
        with self._connection(what) as conn:
            domain, _tag = self._pool_domain(conn, pool, name)
            try:
                found = domain.snapshotLookupByName(snapshot, 0)
            except libvirt.libvirtError as exc:
                if errors.is_not_found(exc):
                    raise VMNotFound(f"{what}: {name} has no snapshot of that name") from exc
                raise
            domain.revertToSnapshot(found, 0)

    def create_disk(self, pool: PoolConfig, name: str, size_gb: int) -> None:
        what = f"adding a {size_gb} GB disk to {name}"
        if not isinstance(size_gb, int) or isinstance(size_gb, bool) or size_gb < 1:
            raise PermanentError(f"{what}: the size must be a whole number of GB, at least 1")
        with self._connection(what) as conn:
            domain, _tag = self._pool_domain(conn, pool, name)
            description = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            try:
                target = domain_xml.free_target(description)
            except ValueError as exc:
                raise PermanentError(f"{what}: {exc}") from exc
            first = next((disk for disk in domain_xml.disks(description) if disk.device == "disk"), None)
            first_volume = volumes.lookup_path(conn, first) if first is not None else None
            target_pool = volumes.storage_pool(conn, pool.provider_options.storage_pool, first_volume)
            path = volumes.create_blank(target_pool, name, target, size_gb)
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if domain.isActive():
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            try:
                domain.attachDeviceFlags(domain_xml.disk_device_xml(path, target), flags)
            except Exception:
                with contextlib.suppress(Exception):  # do not leave the volume behind
                    volumes.delete(conn.storageVolLookupByPath(path))
                raise

    # -- housekeeping --------------------------------------------------------------------
    def purge_unconfigured(self, pools: list) -> list:
        if not self.config.purge_unconfigured:
            return []
        configured = {pool.name for pool in pools if pool.provider == self.name}
        removed = []
        with self._connection("purging domains of unconfigured pools") as conn:
            for domain, tag in inventory.tagged(conn):
                if tag.provider != self.name or tag.pool in configured:
                    continue
                name = domain.name()
                try:
                    self._remove(conn, domain, name)
                    volumes.delete_remains(conn, name, self._volumes_in_use(conn))
                    removed.append(name)
                except libvirt.libvirtError as exc:  # one stubborn domain must not stop the rest
                    log.warning("purging domain %s: %s", name, exc)
        return removed

    # -- service -------------------------------------------------------------------------
    def health(self) -> dict:
        message, when = self._last_error or (None, None)
        return {"uri": self.config.uri, "connections": self._connections.stats(), "last_error": message,
                "last_error_at": when.isoformat(timespec="seconds") if when else None}

    def close(self) -> None:
        self._connections.close()


"""Storage volumes: a clone's disks, the disks added to it, and what an interrupted clone left.

Every volume of VM ``<name>`` is named ``<name>-<target>.qcow2`` (``vda`` for the clone of the
template's first disk, ``vdb``... for the next ones and for added disks), so the volumes of a name
are found even when no domain says it uses them.
"""
from __future__ import annotations

import logging
import re
from typing import Optional

import libvirt

from vmpooler.providers.base import PermanentError
from vmpooler.providers.libvirt import domain_xml
from vmpooler.providers.libvirt.errors import is_not_found

log = logging.getLogger(__name__)
GIB = 1024 ** 3


def volume_name(vm: str, target: str) -> str:
    return f"{vm}-{target}.qcow2"


def is_volume_of(volume: str, vm: str) -> bool:
    return re.fullmatch(re.escape(vm) + r"-[sv]d[a-z]+\.qcow2", volume) is not None


def lookup_path(conn, disk: domain_xml.Disk):
    """The volume a disk uses, or None when its file is in no storage pool libvirt knows."""
    try:
        if disk.source is not None:
            return conn.storagePoolLookupByName(disk.source[0]).storageVolLookupByName(disk.source[1])
        return conn.storageVolLookupByPath(disk.path) if disk.path else None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            return None
        raise


def storage_pool(conn, name: Optional[str], template_volume):
    """The pool named ``name``, else the template's first disk's pool."""
    if name:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise PermanentError(f"storage pool {name} not found") from exc
            raise
    elif template_volume is not None:
        pool = template_volume.storagePoolLookupByVolume()
    else:
        raise PermanentError("the template's disk is in no storage pool: set storage_pool on the pool")
    if not pool.isActive():
        raise PermanentError(f"storage pool {pool.name()} is not active")
    return pool


def format_of(volume) -> str:
    """A volume's format (qcow2, raw, ...), from its definition."""
    found = re.search(r"<target>.*?<format type='([^']+)'", volume.XMLDesc(0), re.S)
    return found.group(1) if found else "raw"


def create_clone(pool, vm: str, target: str, template_volume, linked: bool) -> str:
    """A new volume for disk ``target`` of ``vm`` from the template's volume: backed by it (linked)
    or a full copy. Its path."""
    _kind, capacity, _allocation = template_volume.info()
    name = volume_name(vm, target)
    if linked:
        xml = domain_xml.volume_xml(name, capacity, (template_volume.path(), format_of(template_volume)))
        return pool.createXML(xml, 0).path()
    return pool.createXMLFrom(domain_xml.volume_xml(name, capacity), template_volume, 0).path()


def create_blank(pool, vm: str, target: str, size_gb: int) -> str:
    return pool.createXML(domain_xml.volume_xml(volume_name(vm, target), size_gb * GIB), 0).path()


def delete(volume) -> bool:
    """Delete ``volume``; one already gone counts as deleted."""
    try:
        volume.delete(0)
        return True
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL or is_not_found(exc):
            return False
        raise


def _path(volume) -> Optional[str]:
    """The volume's path; None when it was deleted since it was listed."""
    try:
        return volume.path()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def delete_remains(conn, vm: str, keep: frozenset = frozenset()) -> list:
    """Delete the volumes named for ``vm`` in every active storage pool, except paths in ``keep``.
    The names of the deleted."""
    deleted = []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        try:
            pool.refresh(0)
        except libvirt.libvirtError:
            pass  # a pool being refreshed by another thread lists what it knew
        for volume in pool.listAllVolumes(0):
            if is_volume_of(volume.name(), vm) and _path(volume) not in keep and delete(volume):
                deleted.append(volume.name())
    return deleted

"""What a clone is made of: its placement, its configuration and, for linked clones, the
template's delta disks. Pure spec builders are kept apart from the calls that need the server."""
from __future__ import annotations

import datetime
import json
from typing import Mapping, Optional

from pyVmomi import vim

LINKED_DISK_MOVE = "moveChildMostDiskBacking"
FULL_DISK_MOVE = "moveAllDiskBackingsAndConsolidate"


def annotation(pool: str, template: str, created_by: str, now: Optional[datetime.datetime] = None) -> str:
    """The JSON note set on each clone, telling who made it from what (read back by get_vm)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return json.dumps({"pool": pool, "template": template, "created_by": created_by,
                       "creation_timestamp": now.isoformat(timespec="seconds")}, sort_keys=True)


def clone_spec(name: str, note: str, datastore, resource_pool, linked: bool,
               extra: Optional[Mapping[str, str]] = None) -> vim.vm.CloneSpec:
    """The CloneSpec of VM ``name``: placed on ``datastore`` in ``resource_pool`` (either may be
    None: vSphere then keeps the template's), told its hostname through guestinfo, given the
    ``extra`` configuration options (the pool's), powered on."""
    location = vim.vm.RelocateSpec(diskMoveType=LINKED_DISK_MOVE if linked else FULL_DISK_MOVE)
    if datastore is not None:
        location.datastore = datastore
    if resource_pool is not None:
        location.pool = resource_pool
    # The guest reads guestinfo.hostname with vmtoolsd and names itself after the VM.
    config = vim.vm.ConfigSpec(annotation=note, extraConfig=[
        vim.option.OptionValue(key="guestinfo.hostname", value=name)] + [
        vim.option.OptionValue(key=key, value=value) for key, value in sorted((extra or {}).items())])
    return vim.vm.CloneSpec(location=location, config=config, powerOn=True, template=False)


def delta_disk_layer(devices) -> Optional[vim.vm.ConfigSpec]:
    """A ConfigSpec that puts a child delta disk over each disk of a template that has none, so
    its base disks become read-only parents that linked clones may share; None when every disk
    already is a child (the layer exists, and adding another each start would only pile up)."""
    changes = []
    for disk in devices:
        if not isinstance(disk, vim.vm.device.VirtualDisk) or disk.backing.parent is not None:
            continue
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            # "[datastore]" alone asks vSphere to place the new delta file beside the VM
            fileName=f"[{disk.backing.datastore.name}]" if disk.backing.datastore else "",
            datastore=disk.backing.datastore, diskMode=disk.backing.diskMode, parent=disk.backing)
        delta = vim.vm.device.VirtualDisk(key=disk.key, controllerKey=disk.controllerKey,
                                          unitNumber=disk.unitNumber, capacityInKB=disk.capacityInKB,
                                          backing=backing)
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="remove", device=disk))
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=delta, fileOperation="create"))
    return vim.vm.ConfigSpec(deviceChange=changes) if changes else None

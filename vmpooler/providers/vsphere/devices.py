"""Adding a disk to a VM: where it goes on the SCSI bus and what file backs it."""
from __future__ import annotations

from typing import Optional

from pyVmomi import vim

_UNITS_PER_SCSI_BUS = 16
_DEFAULT_CONTROLLER_UNIT = 7  # the unit a SCSI controller takes on its own bus


def free_scsi_slot(devices) -> Optional[tuple]:
    """(controller key, unit number) of the lowest free unit on the first SCSI controller that has
    one, counting the controller's own unit as taken; None when every bus is full."""
    for controller in devices:
        if not isinstance(controller, vim.vm.device.VirtualSCSIController):
            continue
        taken = {device.unitNumber for device in devices if device.controllerKey == controller.key}
        own_unit = controller.scsiCtlrUnitNumber
        taken.add(_DEFAULT_CONTROLLER_UNIT if own_unit is None else own_unit)
        for unit in range(_UNITS_PER_SCSI_BUS):
            if unit not in taken:
                return controller.key, unit
    return None


def new_disk_path(datastore: str, vm_name: str, devices) -> str:
    """``[datastore] vm/vm_<n>.vmdk`` with the lowest n >= 1 that no attached disk uses."""
    used = {device.backing.fileName for device in devices
            if isinstance(device, vim.vm.device.VirtualDisk) and getattr(device.backing, "fileName", None)}
    number = 1
    while f"[{datastore}] {vm_name}/{vm_name}_{number}.vmdk" in used:
        number += 1
    return f"[{datastore}] {vm_name}/{vm_name}_{number}.vmdk"


def thin_disk_file(size_gb: int) -> vim.VirtualDiskManager.FileBackedVirtualDiskSpec:
    return vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
        diskType="thin", adapterType="lsiLogic", capacityKb=size_gb * 1024 * 1024)


def attach_disk(path: str, size_gb: int, controller_key: int, unit: int) -> vim.vm.ConfigSpec:
    """A ConfigSpec attaching the existing disk file ``path`` as a persistent thin disk."""
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=path, diskMode="persistent",
                                                            thinProvisioned=True)
    disk = vim.vm.device.VirtualDisk(key=-1, controllerKey=controller_key, unitNumber=unit,
                                     capacityInKB=size_gb * 1024 * 1024, backing=backing)
    return vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=disk)])

"""Finding what lives under the pools' base folders that no pool uses any more.

A pool's base folder is the parent of its folder (``vmpooler`` for ``vmpooler/debian-7``). Each
child folder of a base folder that is neither some pool's folder (or an ancestor of one) nor
allow-listed is unconfigured: its VMs are destroyed, then the folder. VMs sitting directly in a
base folder are left alone, as in the original, and so is anything that looks like a template,
so that a misplaced template never goes with the folder it sits in.
"""
from __future__ import annotations

import dataclasses

from pyVmomi import vim

from vmpooler.providers.vsphere import inventory


@dataclasses.dataclass
class BaseFolder:
    datacenter: str
    path: str  # relative to the datacenter's VM folder
    configured: set = dataclasses.field(default_factory=set)  # pool folders under it

    def in_use(self, child: str) -> bool:
        child_path = f"{self.path}/{child}"
        return any(folder == child_path or folder.startswith(child_path + "/") for folder in self.configured)


def base_folders(pools, datacenter_of) -> list:
    """One BaseFolder per (datacenter, parent of a pool folder). A pool folder right under the
    datacenter's VM folder has no base folder: that root is never purged."""
    bases: dict = {}
    for pool in pools:
        folder = pool.provider_options.folder
        if "/" not in folder:
            continue
        datacenter = datacenter_of(pool)
        parent = folder.rsplit("/", 1)[0]
        bases.setdefault((datacenter, parent), BaseFolder(datacenter, parent)).configured.add(folder)
    # A pool folder inside another base folder's subtree keeps that subtree in use too.
    for base in bases.values():
        base.configured.update(folder for other in bases.values() if other.datacenter == base.datacenter
                               for folder in other.configured)
    return list(bases.values())


def unconfigured_folders(content, base: BaseFolder, allow_list) -> list:
    """[(path, folder)] of the child folders of ``base`` that no pool uses and nobody allow-listed."""
    root = inventory.find(content, f"{base.datacenter}/vm/{base.path}")
    if root is None:
        return []
    children = inventory.contents(content, root, vim.Folder, ["name"])
    return [(f"{base.path}/{props['name']}", child) for child, props in children
            if not base.in_use(props["name"]) and props["name"] not in allow_list
            and f"{base.path}/{props['name']}" not in allow_list]


def vms_to_destroy(content, folder, template_names) -> tuple:
    """([(vm, props)] to destroy under ``folder``, whether anything must be kept there)."""
    found = inventory.contents(content, folder, vim.VirtualMachine,
                               ["name", "runtime.powerState", "config.template"], recursive=True)
    doomed = [(vm, props) for vm, props in found
              if not props.get("config.template") and props.get("name") not in template_names]
    return doomed, len(doomed) < len(found)

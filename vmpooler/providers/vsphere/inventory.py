"""Reading the vSphere inventory with as few round trips as possible.

Everything goes through the property collector so that one request returns the properties of
many objects; ``pyVim.task`` and attribute access on managed objects are avoided where they would
cost a round trip per object or, for tasks, choke on the simulator's snapshot entities.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from typing import Iterable, Optional

from pyVmomi import vim, vmodl

from vmpooler.model import VMInfo
from vmpooler.providers.base import TransientError

log = logging.getLogger(__name__)

PropertyCollector = vmodl.query.PropertyCollector
VM_PROPERTIES = ("name", "runtime.powerState", "guest.ipAddress", "guest.hostName", "config.annotation")


def find(content, path: str):
    """The managed entity at inventory ``path`` (``DC0/vm/folder/name``), or None."""
    return content.searchIndex.FindByInventoryPath(path)


def retrieve(content, root, object_type, properties: Iterable[str], through_view: bool = False) -> list:
    """[(object, {property: value})] for ``root`` or, with ``through_view``, for every object in
    the container view ``root``: one RetrievePropertiesEx, plus one ContinueRetrievePropertiesEx
    per further page. An object that vanished meanwhile is left out; any other missing property
    raises, because a silently partial answer is worse than none."""
    select = [PropertyCollector.TraversalSpec(name="view", type=vim.view.ContainerView, path="view",
                                              skip=False)] if through_view else []
    spec = PropertyCollector.FilterSpec(
        objectSet=[PropertyCollector.ObjectSpec(obj=root, skip=through_view, selectSet=select)],
        propSet=[PropertyCollector.PropertySpec(type=object_type, pathSet=list(properties))])
    collector = content.propertyCollector
    page = collector.RetrievePropertiesEx([spec], PropertyCollector.RetrieveOptions())
    found = []
    while page is not None:
        found.extend(_read(page.objects))
        if not page.token:
            break
        page = collector.ContinueRetrievePropertiesEx(page.token)
    return found


def _read(objects) -> list:
    found = []
    for item in objects or ():
        faults = [missing.fault for missing in item.missingSet or ()]
        if any(isinstance(fault, vmodl.fault.ManagedObjectNotFound) for fault in faults):
            continue
        if faults:
            raise faults[0]
        found.append((item.obj, {prop.name: prop.val for prop in item.propSet or ()}))
    return found


def properties(content, obj, object_type, names: Iterable[str]) -> Optional[dict]:
    """The named properties of one object (unset ones absent), or None when it is gone."""
    found = retrieve(content, obj, object_type, names)
    return found[0][1] if found else None


@contextlib.contextmanager
def container_view(content, root, types: list, recursive: bool):
    view = content.viewManager.CreateContainerView(root, types, recursive)
    try:
        yield view
    finally:
        try:
            view.DestroyView()
        except Exception as exc:  # a view dies with its session anyway
            log.debug("DestroyView failed: %s", exc)


def contents(content, root, object_type, names: Iterable[str], recursive: bool = False) -> list:
    """The named properties of every ``object_type`` under ``root``, in one query."""
    with container_view(content, root, [object_type], recursive) as view:
        return retrieve(content, view, object_type, names, through_view=True)


def find_compute_resource(content, host_folder, name: str) -> Optional[dict]:
    """The name and resourcePool of the cluster or standalone host called ``name`` anywhere
    under a datacenter's host folder, or None."""
    with container_view(content, host_folder, [vim.ComputeResource, vim.ClusterComputeResource],
                        recursive=True) as view:
        found = retrieve(content, view, vim.ComputeResource, ["name", "resourcePool"], through_view=True)
    for _obj, props in found:
        if props.get("name") == name:
            return props
    return None


def ensure_folder(content, datacenter_path: str, folder_path: str, create: bool):
    """The VM folder ``folder_path`` of the datacenter; with ``create``, missing levels are made
    one by one. None when it does not exist and may not be created."""
    base = f"{datacenter_path}/vm"
    folder = find(content, f"{base}/{folder_path}")
    if folder is not None or not create:
        return folder
    parent = find(content, base)
    if parent is None:
        return None
    for level in (part for part in folder_path.split("/") if part):
        base = f"{base}/{level}"
        child = find(content, base)
        if child is None:
            try:
                child = parent.CreateFolder(level)
            except vim.fault.DuplicateName:  # another thread made it first
                child = find(content, base)
        parent = child
    return parent


def find_snapshot(snapshot_info, name: str):
    """The snapshot called ``name`` in a VM's ``snapshot`` property, walking the whole tree."""
    pending = list(snapshot_info.rootSnapshotList) if snapshot_info else []
    while pending:
        tree = pending.pop()
        if tree.name == name:
            return tree.snapshot
        pending.extend(tree.childSnapshotList or ())
    return None


def vm_info(props: dict) -> VMInfo:
    """A VMInfo from the VM_PROPERTIES of one VM. A VM being created or removed while the properties
    are collected can come back without its name: the answer is then incomplete, and a listing
    must be complete or fail (the reconcile acts on what it lists), so that is a transient error."""
    if not props.get("name"):
        raise TransientError("vCenter returned a VM without its name (it is being created or removed); "
                             "try again")
    template = None
    try:
        template = json.loads(props.get("config.annotation") or "{}").get("template")
    except (ValueError, AttributeError):  # an annotation someone wrote by hand
        pass
    return VMInfo(
        name=props["name"], powered_on=props.get("runtime.powerState") == "poweredOn",
        ip=usable_ip(props.get("guest.ipAddress")), hostname=props.get("guest.hostName") or None,
        template=template)


def usable_ip(address: Optional[str]) -> Optional[str]:
    """The guest's address unless it is unset, 0.x.x.x or link-local (169.254/16, fe80::/10),
    which the guest reports before its network is really up."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if parsed.is_link_local or parsed.is_unspecified or (parsed.version == 4 and address.startswith("0.")):
        return None
    return address

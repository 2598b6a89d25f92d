"""The provider's pure helpers: disk placement, addresses, VM details, snapshot trees, purge plans."""
import datetime
import json

import pytest
from pyVmomi import vim

from vmpooler.providers.vsphere import clone, devices, inventory, purge
from tests.vsphere.helpers import make_pool

Device = vim.vm.device


def scsi(key, own_unit=7):
    return Device.ParaVirtualSCSIController(key=key, busNumber=0, scsiCtlrUnitNumber=own_unit)


def disk(controller, unit, name="[ds] vm/vm.vmdk"):
    return Device.VirtualDisk(key=controller * 100 + unit, controllerKey=controller, unitNumber=unit,
                              backing=Device.VirtualDisk.FlatVer2BackingInfo(fileName=name))


def test_free_scsi_slot_skips_taken_units_and_the_controller_own_unit():
    assert devices.free_scsi_slot([Device.VirtualIDEController(key=200), scsi(1000)]) == (1000, 0)
    taken = [disk(1000, unit) for unit in range(7)]
    assert devices.free_scsi_slot([scsi(1000), *taken]) == (1000, 8)
    full = [disk(1000, unit) for unit in range(16) if unit != 7]
    assert devices.free_scsi_slot([scsi(1000), *full, scsi(1001)]) == (1001, 0)
    assert devices.free_scsi_slot([scsi(1000), *full]) is None
    assert devices.free_scsi_slot([Device.VirtualIDEController(key=200)]) is None


def test_new_disk_path_picks_the_lowest_unused_number():
    assert devices.new_disk_path("ds", "vm", [disk(1, 0)]) == "[ds] vm/vm_1.vmdk"
    attached = [disk(1, 0), disk(1, 1, "[ds] vm/vm_1.vmdk"), disk(1, 2, "[ds] vm/vm_3.vmdk")]
    assert devices.new_disk_path("ds", "vm", attached) == "[ds] vm/vm_2.vmdk"


def test_attach_disk_spec():
    spec = devices.attach_disk("[ds] vm/vm_1.vmdk", 3, 1000, 2)
    change = spec.deviceChange[0]
    assert change.operation == "add" and change.fileOperation is None  # the file exists already
    assert (change.device.controllerKey, change.device.unitNumber) == (1000, 2)
    assert change.device.capacityInKB == 3 * 1024 * 1024
    assert change.device.backing.thinProvisioned and change.device.backing.diskMode == "persistent"
    assert devices.thin_disk_file(3).capacityKb == 3 * 1024 * 1024


@pytest.mark.parametrize("address, usable", [
    ("10.0.0.5", True), ("127.0.0.1", True), ("2001:db8::1", True),
    (None, False), ("", False), ("0.0.0.0", False), ("0.1.2.3", False), ("169.254.10.1", False),
    ("fe80::1", False), ("not an address", False)])
def test_usable_ip(address, usable):
    assert inventory.usable_ip(address) == (address if usable else None)


def test_vm_info_reads_the_template_from_the_annotation():
    note = clone.annotation("pool", "templates/debian", "svc")
    info = inventory.vm_info({"name": "vm", "runtime.powerState": "poweredOn", "guest.ipAddress": "10.0.0.1",
                              "guest.hostName": "vm.example.test", "config.annotation": note})
    assert (info.name, info.powered_on, info.ip, info.hostname, info.template) == (
        "vm", True, "10.0.0.1", "vm.example.test", "templates/debian")
    bare = inventory.vm_info({"name": "vm", "runtime.powerState": "poweredOff", "config.annotation": "hand written"})
    assert (bare.powered_on, bare.ip, bare.hostname, bare.template) == (False, None, None, None)


def test_annotation_is_json():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert json.loads(clone.annotation("p", "t", "svc", when)) == {
        "pool": "p", "template": "t", "created_by": "svc", "creation_timestamp": "2024-01-02T03:04:05+00:00"}


def test_clone_spec_without_placement_keeps_the_template_s():
    spec = clone.clone_spec("vm1", "{}", None, None, linked=False)
    assert spec.location.datastore is None and spec.location.pool is None
    assert spec.location.diskMoveType == "moveAllDiskBackingsAndConsolidate"
    assert [(o.key, o.value) for o in spec.config.extraConfig] == [("guestinfo.hostname", "vm1")]


def test_a_pool_s_snapshot_mainmem_keys_become_the_clones_extra_config():
    from vmpooler.providers.vsphere.config import parse_pool

    problems: list = []
    options = parse_pool({"folder": "f", "datastore": "d", "snapshot_mainMem_ioBlockPages": "2048",
                          "snapshot_mainMem_iowait": "0"}, problems)
    assert problems == []
    spec = clone.clone_spec("vm1", "{}", None, None, linked=False, extra=options.extra_config)
    assert [(o.key, o.value) for o in spec.config.extraConfig] == [
        ("guestinfo.hostname", "vm1"), ("mainMem.ioBlockPages", "2048"), ("mainMem.iowait", "0")]


def _tree(name, *children):
    return vim.vm.SnapshotTree(name=name, snapshot=vim.vm.Snapshot(f"snap-{name}"), childSnapshotList=list(children))


def test_find_snapshot_walks_the_whole_tree():
    info = vim.vm.SnapshotInfo(rootSnapshotList=[_tree("a", _tree("b", _tree("c"))), _tree("d")])
    assert inventory.find_snapshot(info, "c")._moId == "snap-c"
    assert inventory.find_snapshot(info, "d")._moId == "snap-d"
    assert inventory.find_snapshot(info, "e") is None
    assert inventory.find_snapshot(None, "a") is None


def test_base_folders_group_pools_by_parent_folder():
    pools = [make_pool(name="a", base="vmpooler"), make_pool(name="b", base="vmpooler"),
             make_pool(name="c", base="vmpooler/group"), make_pool(name="top", folder="top"),
             make_pool(name="d", base="other", datacenter="DC1")]
    datacenter_of = lambda pool: pool.provider_options.datacenter or "DC0"  # noqa: E731
    bases = {(b.datacenter, b.path): b for b in purge.base_folders(pools, datacenter_of)}
    assert sorted(bases) == [("DC0", "vmpooler"), ("DC0", "vmpooler/group"), ("DC1", "other")]
    vmpooler = bases[("DC0", "vmpooler")]
    assert vmpooler.in_use("a") and vmpooler.in_use("group") and not vmpooler.in_use("gone")
    assert not vmpooler.in_use("a-prefix")
    assert bases[("DC1", "other")].in_use("d") and not bases[("DC1", "other")].in_use("a")


def test_a_vm_listed_without_its_name_makes_the_answer_transient_not_a_crash():
    import pytest

    from vmpooler.providers.base import TransientError

    with pytest.raises(TransientError):
        inventory.vm_info({"runtime.powerState": "poweredOn"})  # created mid-collection: no name yet

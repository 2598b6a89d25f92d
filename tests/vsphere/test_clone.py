"""Cloning against the simulator: placement, linked and full clones, folders, power, errors."""
import pytest
from pyVmomi import vim

from vmpooler.providers.base import PermanentError
from vmpooler.providers.vsphere import clone
from tests.vsphere.helpers import DATACENTER, fast_settings, make_pool, run_task, vm_at


@pytest.fixture
def built_specs(monkeypatch):
    """Every CloneSpec the provider builds (the simulator ignores diskMoveType, so look here)."""
    specs, build = [], clone.clone_spec

    def recording(*args, **kwargs):
        specs.append(build(*args, **kwargs))
        return specs[-1]

    monkeypatch.setattr(clone, "clone_spec", recording)
    return specs


def test_linked_clone_into_created_nested_folder_is_powered_on(provider, vc, built_specs):
    pool = make_pool(base="vmpooler/nested/deeper")
    info = provider.create_vm(pool, "vm-linked")
    assert (info.name, info.powered_on, info.template) == ("vm-linked", True, pool.template)
    vm = vm_at(vc, pool, "vm-linked")
    assert vm is not None and vm.parent.name == pool.name
    assert vm.runtime.powerState == "poweredOn"
    assert vm.resourcePool.owner.name == "DC0_C0"  # the clone_target cluster's root resource pool
    assert {o.key: o.value for o in vm.config.extraConfig}["guestinfo.hostname"] == "vm-linked"
    spec = built_specs[-1]
    assert spec.location.diskMoveType == "moveChildMostDiskBacking"
    assert spec.location.datastore.name == "LocalDS_0"
    assert spec.powerOn is True and spec.template is False


@pytest.mark.parametrize("settings, pool_options", [
    ({"create_linked_clones": False}, {}),
    ({"create_linked_clones": True}, {"create_linked_clone": False}),
    ({"create_linked_clones": True}, {"create_linked_clone": "false"}),
])
def test_full_clone_when_either_setting_says_so(make_provider, vc, built_specs, settings, pool_options):
    provider = make_provider(settings=fast_settings(**settings))
    pool = make_pool(**pool_options)
    provider.create_vm(pool, "vm-full")
    assert built_specs[-1].location.diskMoveType == "moveAllDiskBackingsAndConsolidate"
    assert vm_at(vc, pool, "vm-full").runtime.powerState == "poweredOn"


def test_without_clone_target_the_template_resource_pool_is_used(provider, vc, built_specs):
    pool = make_pool(clone_target=None)
    provider.create_vm(pool, "vm-here")
    template = vc.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/{pool.template}")
    assert built_specs[-1].location.pool == template.resourcePool
    assert vm_at(vc, pool, "vm-here") is not None


def test_annotation_says_where_the_clone_came_from(built_specs, provider):
    pool = make_pool()
    provider.create_vm(pool, "vm-noted")
    note = clone.json.loads(built_specs[-1].config.annotation)
    assert note["pool"] == pool.name and note["template"] == pool.template
    assert note["created_by"] == "vmpooler" and note["creation_timestamp"]


@pytest.mark.parametrize("change, message", [
    ({"template": "no-such-template"}, "template DC0/vm/no-such-template not found"),
    ({"datastore": "no-such-datastore"}, "datastore DC0/datastore/no-such-datastore not found"),
    ({"clone_target": "no-such-cluster"}, "clone_target no-such-cluster not found"),
    ({"datacenter": "DC9"}, "template DC9/vm/"),
])
def test_missing_pieces_are_permanent_errors(provider, change, message):
    with pytest.raises(PermanentError, match=message):
        provider.create_vm(make_pool(**change), "vm-never")


def test_missing_folder_is_permanent_unless_create_folders(make_provider, vc):
    provider = make_provider(settings=fast_settings(create_folders=False))
    pool = make_pool()
    with pytest.raises(PermanentError, match=f"folder DC0/vm/{pool.provider_options.folder} not found"):
        provider.create_vm(pool, "vm-never")
    assert vc.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/{pool.provider_options.folder}") is None


def test_template_delta_disks_are_added_once_per_template(make_provider, monkeypatch):
    provider = make_provider(settings=fast_settings(create_template_delta_disks=True))
    waited, wait = [], provider._wait
    monkeypatch.setattr(provider, "_wait", lambda content, task, what, timeout=None: (
        waited.append(what), wait(content, task, what, timeout))[1])
    pool = make_pool(template="DC0_H0_VM1", clone_target=None)
    provider.create_vm(pool, "vm-delta1")
    provider.create_vm(pool, "vm-delta2")
    assert waited.count("adding delta disks to template DC0/vm/DC0_H0_VM1") == 1
    provider.create_vm(make_pool(create_linked_clone=False, template="DC0_C0_RP0_VM1"), "vm-full")
    assert not any("DC0_C0_RP0_VM1" in what for what in waited if what.startswith("adding delta"))


def test_delta_disk_layer_makes_the_template_disks_parents(vc):
    # The simulator's clone rewrites its template's disks, so look before any clone of this one.
    template = vc.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/DC0_H0_VM0")
    before = [d for d in template.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    run_task(vc, template.ReconfigVM_Task(clone.delta_disk_layer(template.config.hardware.device)))
    after = [d for d in template.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    assert [d.backing.parent.fileName for d in after] == [d.backing.fileName for d in before]
    assert clone.delta_disk_layer(template.config.hardware.device) is None


def test_delta_disk_layer_skips_disks_that_already_have_a_parent():
    parent = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName="[ds] t/base.vmdk")
    child = vim.vm.device.VirtualDisk(key=1, backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        fileName="[ds] t/delta.vmdk", parent=parent))
    assert clone.delta_disk_layer([child]) is None
    base = vim.vm.device.VirtualDisk(key=2, controllerKey=3, unitNumber=0, capacityInKB=10,
                                     backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                                         fileName="[ds] t/base.vmdk", diskMode="persistent"))
    spec = clone.delta_disk_layer([child, base])
    assert [c.operation for c in spec.deviceChange] == ["remove", "add"]
    added = spec.deviceChange[1]
    assert added.fileOperation == "create" and added.device.backing.parent is base.backing
    assert (added.device.key, added.device.unitNumber) == (2, 0)

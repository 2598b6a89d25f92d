"""Inventory, readiness, destroy, snapshots and disks against the simulator."""
import dataclasses

import pytest
from pyVmomi import SoapStubAdapter, vim

from vmpooler.model import NotReady
from vmpooler.providers.base import PermanentError, VMNotFound
from tests.vsphere.helpers import DATACENTER, make_pool, set_guest_ip, vm_at


@pytest.fixture
def soap_calls(monkeypatch):
    """A list that grows by one method name per SOAP request any session sends."""
    calls, invoke = [], SoapStubAdapter.InvokeMethod

    def counting(self, mo, info, args, *rest, **kwargs):
        calls.append(info.name)
        return invoke(self, mo, info, args, *rest, **kwargs)

    monkeypatch.setattr(SoapStubAdapter, "InvokeMethod", counting)
    return calls


def test_list_vms_reports_every_vm_of_the_folder(provider, pool, vc):
    assert provider.list_vms(pool) == []  # no folder yet
    for name in ("vm-a", "vm-b", "vm-c"):
        provider.create_vm(pool, name)
    set_guest_ip(vc, pool, "vm-b")
    found = {vm.name: vm for vm in provider.list_vms(pool)}
    assert sorted(found) == ["vm-a", "vm-b", "vm-c"]
    assert all(vm.powered_on for vm in found.values())
    assert (found["vm-a"].ip, found["vm-b"].ip) == (None, "127.0.0.1")
    assert provider.list_vms(make_pool(base=pool.provider_options.folder)) == []  # a sibling pool sees none of them


def test_list_vms_costs_the_same_round_trips_for_one_vm_or_many(provider, soap_calls):
    small, large = make_pool(), make_pool()
    provider.create_vm(small, "vm-one")
    for index in range(4):
        provider.create_vm(large, f"vm-many{index}")
    provider.list_vms(small)  # connect first, so both counts start from a live session
    del soap_calls[:]
    provider.list_vms(small)
    one = list(soap_calls)
    del soap_calls[:]
    assert len(provider.list_vms(large)) == 4
    assert soap_calls == one, one
    assert soap_calls.count("RetrievePropertiesEx") == 1


def test_list_vms_with_an_unknown_datacenter_raises(provider):
    with pytest.raises(PermanentError, match="datacenter DC9 not found"):
        provider.list_vms(make_pool(datacenter="DC9"))


def test_get_vm(provider, pool, vc):
    assert provider.get_vm(pool, "vm-get") is None
    provider.create_vm(pool, "vm-get")
    info = provider.get_vm(pool, "vm-get")
    assert (info.name, info.powered_on, info.ip) == ("vm-get", True, None)
    set_guest_ip(vc, pool, "vm-get", "10.1.2.3", hostname="vm-get.example.test")
    info = provider.get_vm(pool, "vm-get")
    assert (info.ip, info.hostname) == ("10.1.2.3", "vm-get.example.test")
    set_guest_ip(vc, pool, "vm-get", "169.254.7.7")
    assert provider.get_vm(pool, "vm-get").ip is None


def test_is_ready_needs_an_address_and_an_open_port(provider, vc, listening_port, closed_port):
    listening = make_pool(ready_check_port=listening_port)
    provider.create_vm(listening, "vm-ready")
    no_address = "its guest address never came (VMware Tools reported none usable)"
    assert provider.is_ready(listening, "vm-ready") == NotReady(no_address)  # no address yet: false, and why
    set_guest_ip(vc, listening, "vm-ready", "0.0.0.0")
    assert provider.is_ready(listening, "vm-ready") == NotReady(no_address)  # not a usable address
    set_guest_ip(vc, listening, "vm-ready")
    assert provider.is_ready(listening, "vm-ready") is True
    closed = make_pool(name=listening.name, ready_check_port=closed_port)
    answer = provider.is_ready(closed, "vm-ready")
    assert not answer and answer == NotReady(f"its port {closed_port} on 127.0.0.1 never opened")
    unchecked = make_pool(name=listening.name, ready_check_port=0)
    assert provider.is_ready(unchecked, "vm-ready") is True


def test_is_ready_of_a_missing_vm_raises_not_found(provider, pool):
    with pytest.raises(VMNotFound):
        provider.is_ready(pool, "vm-nowhere")


def test_is_ready_probes_name_dot_the_pools_domain_when_it_has_one(provider, pool, vc, monkeypatch):
    from vmpooler.providers.vsphere import provider as provider_module

    probed = []
    monkeypatch.setattr(provider_module, "port_open", lambda host, port: probed.append((host, port)) or True)
    with_domain = dataclasses.replace(pool, domain="example.test")  # from its dns_plugin, or :config: domain
    provider.create_vm(pool, "vm-dns")
    set_guest_ip(vc, pool, "vm-dns")
    assert provider.is_ready(pool, "vm-dns") and provider.is_ready(with_domain, "vm-dns")
    assert probed == [("127.0.0.1", 22), ("vm-dns.example.test", 22)]


def test_destroy_powers_off_and_deletes_and_a_second_destroy_is_a_no_op(provider, pool, vc):
    provider.create_vm(pool, "vm-doomed")
    provider.destroy_vm(pool, "vm-doomed")
    assert vm_at(vc, pool, "vm-doomed") is None
    assert provider.get_vm(pool, "vm-doomed") is None
    provider.destroy_vm(pool, "vm-doomed")
    provider.destroy_vm(make_pool(), "vm-never-existed")  # not even its folder exists


def test_snapshots(provider, pool, vc):
    provider.create_vm(pool, "vm-snap")
    provider.create_snapshot(pool, "vm-snap", "first")
    provider.create_snapshot(pool, "vm-snap", "second")
    with pytest.raises(PermanentError, match="already has a snapshot"):
        provider.create_snapshot(pool, "vm-snap", "first")
    vm = vm_at(vc, pool, "vm-snap")
    provider.revert_snapshot(pool, "vm-snap", "first")
    assert vm.snapshot.currentSnapshot == vm.snapshot.rootSnapshotList[0].snapshot
    provider.revert_snapshot(pool, "vm-snap", "second")  # a child in the tree is found too
    assert vm.snapshot.rootSnapshotList[0].childSnapshotList[0].name == "second"
    with pytest.raises(VMNotFound, match="no snapshot of that name"):
        provider.revert_snapshot(pool, "vm-snap", "third")
    with pytest.raises(VMNotFound):
        provider.create_snapshot(pool, "vm-missing", "first")


def test_create_disk_adds_thin_disks_on_free_scsi_units(provider, pool, vc):
    provider.create_vm(pool, "vm-disk")
    provider.create_disk(pool, "vm-disk", 2)
    provider.create_disk(pool, "vm-disk", 1)
    disks = [d for d in vm_at(vc, pool, "vm-disk").config.hardware.device
             if isinstance(d, vim.vm.device.VirtualDisk)]
    added = {d.backing.fileName: d for d in disks[1:]}
    assert sorted(added) == ["[LocalDS_0] vm-disk/vm-disk_1.vmdk", "[LocalDS_0] vm-disk/vm-disk_2.vmdk"]
    assert added["[LocalDS_0] vm-disk/vm-disk_1.vmdk"].capacityInKB == 2 * 1024 * 1024
    units = [(d.controllerKey, d.unitNumber) for d in disks]
    assert len(set(units)) == len(units)
    with pytest.raises(PermanentError, match="at least 1"):
        provider.create_disk(pool, "vm-disk", 0)
    with pytest.raises(VMNotFound):
        provider.create_disk(pool, "vm-missing", 1)
    assert vc.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/{pool.provider_options.folder}/vm-disk") is not None


def test_concurrent_clones_share_a_small_pool_and_create_the_folder_once(make_provider, vc):
    from concurrent.futures import ThreadPoolExecutor

    provider = make_provider(connection_pool_size=2)
    pool = make_pool(base="concurrent/deeper")
    names = [f"vm-par{index}" for index in range(6)]
    with ThreadPoolExecutor(max_workers=6) as executor:
        list(executor.map(lambda name: provider.create_vm(pool, name), names))
    assert sorted(vm.name for vm in provider.list_vms(pool)) == names
    parent = vc.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/concurrent/deeper")
    assert [child.name for child in parent.childEntity] == [pool.name]
    assert provider.health()["connections"] == {"size": 2, "in_use": 0, "open": 2}

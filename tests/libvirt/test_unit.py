"""The libvirt provider on libvirt's built-in ``test:///default`` driver (in-process, no daemon):
clone definitions, tagging, inventory, destroy and cleanup, snapshots, purge and error mapping.
What the test driver cannot do (attaching disks, DHCP leases, booting) is tested against the real
libvirtd in test_real.py."""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from tests.libvirt.helpers import define_test_template, libvirt_config, require_libvirt, unique
from vmpooler.config import ConfigError, build
from vmpooler.providers.base import PermanentError, TransientError, VMExists, VMNotFound
from vmpooler.providers.registry import REGISTRY

libvirt = require_libvirt()
URI = "test:///default"


@pytest.fixture
def conn():
    connection = libvirt.open(URI)
    yield connection
    connection.close()


@pytest.fixture
def setup(conn):
    """(provider, pool, template volume, config) for a pool on a template of the test's own."""
    template = unique("tpl")
    volume = define_test_template(conn, template)
    config = libvirt_config(URI, [{"name": unique("pool"), "template": template},
                                  {"name": unique("other"), "template": template}],
                            purge_unconfigured_resources=True)
    provider = REGISTRY.build(config)["libvirt"]
    yield provider, config.pools[0], volume, config
    for pool in config.pools:  # test:///default lives as long as the process: leave it clean
        for info in provider.list_vms(pool):
            provider.destroy_vm(pool, info.name)
    conn.lookupByName(template).undefine()
    volume.delete(0)
    provider.close()


def volumes(conn):
    return {volume.name() for volume in conn.storagePoolLookupByName("default-pool").listAllVolumes(0)}


def test_a_clone_is_the_template_renamed_on_a_linked_qcow2_volume(conn, setup):
    provider, pool, template_volume, _config = setup
    name = unique("vm")
    info = provider.create_vm(pool, name)
    assert (info.name, info.powered_on, info.template) == (name, True, pool.template)
    domain = conn.lookupByName(name)
    assert domain.isActive() and domain.isPersistent()
    root = ET.fromstring(domain.XMLDesc(0))
    template = ET.fromstring(conn.lookupByName(pool.template).XMLDesc(0))
    assert root.findtext("uuid") != template.findtext("uuid")
    assert root.find("devices/interface/mac").get("address") != template.find("devices/interface/mac").get("address")
    assert root.find("sysinfo/system/entry[@name='serial']").text == f"ds=nocloud;h={name}"
    assert root.find("os/smbios").get("mode") == "sysinfo"
    disk = root.find("devices/disk/source").get("file")
    volume = conn.storageVolLookupByPath(disk)
    assert volume.name() == f"{name}-vda.qcow2"
    backing = ET.fromstring(volume.XMLDesc(0)).find("backingStore")
    assert backing.findtext("path") == template_volume.path()
    assert backing.find("format").get("type") == "qcow2"


def test_a_full_copy_has_no_backing_store(conn, conn_template_pool_full):
    provider, pool = conn_template_pool_full
    name = unique("vm")
    provider.create_vm(pool, name)
    path = ET.fromstring(conn.lookupByName(name).XMLDesc(0)).find("devices/disk/source").get("file")
    assert ET.fromstring(conn.storageVolLookupByPath(path).XMLDesc(0)).find("backingStore") is None
    provider.destroy_vm(pool, name)


@pytest.fixture
def conn_template_pool_full(conn):
    template = unique("tpl")
    define_test_template(conn, template)
    config = libvirt_config(URI, [{"name": unique("pool"), "template": template, "create_linked_clone": False}])
    provider = REGISTRY.build(config)["libvirt"]
    yield provider, config.pools[0]
    provider.close()


def test_the_inventory_lists_exactly_the_pools_tagged_domains(conn, setup):
    provider, pool, _volume, config = setup
    other = config.pools[1]
    mine = {unique("vm"), unique("vm")}
    for name in mine:
        provider.create_vm(pool, name)
    provider.create_vm(other, unique("vm"))
    assert {info.name for info in provider.list_vms(pool)} == mine
    info = provider.get_vm(pool, next(iter(mine)))
    assert info.powered_on and info.template == pool.template and info.extra["created"]
    assert provider.get_vm(other, next(iter(mine))) is None  # another pool's VM is not this pool's
    assert provider.get_vm(pool, pool.template) is None  # the template carries no tag


def test_destroy_removes_the_domain_its_snapshots_and_volumes_but_not_the_templates(conn, setup):
    provider, pool, template_volume, _config = setup
    name = unique("vm")
    provider.create_vm(pool, name)
    provider.create_snapshot(pool, name, "before")
    provider.destroy_vm(pool, name)
    assert name not in {domain.name() for domain in conn.listAllDomains(0)}
    assert not {volume for volume in volumes(conn) if volume.startswith(name)}
    assert template_volume.name() in volumes(conn)
    provider.destroy_vm(pool, name)  # already gone: destroyed


def test_create_and_destroy_clean_up_what_an_interrupted_clone_left(conn, setup):
    provider, pool, template_volume, _config = setup
    storage = conn.storagePoolLookupByName("default-pool")
    # a volume without a domain: the clone died between the two
    left = unique("vm")
    storage.createXML(f"<volume><name>{left}-vda.qcow2</name><capacity unit='M'>1</capacity></volume>", 0)
    provider.destroy_vm(pool, left)
    assert f"{left}-vda.qcow2" not in volumes(conn)
    storage.createXML(f"<volume><name>{left}-vda.qcow2</name><capacity unit='M'>1</capacity></volume>", 0)
    provider.create_vm(pool, left)
    assert conn.lookupByName(left).isActive()
    # a domain defined but never started: the clone died before create()
    stopped = unique("vm")
    provider.create_vm(pool, stopped)
    conn.lookupByName(stopped).destroy()
    provider.create_vm(pool, stopped)
    assert conn.lookupByName(stopped).isActive()
    assert {volume for volume in volumes(conn) if volume.startswith(stopped)} == {f"{stopped}-vda.qcow2"}
    assert template_volume.name() in volumes(conn)


def test_a_name_taken_by_a_domain_that_is_not_ours_is_refused_and_left_alone(conn, setup):
    provider, pool, _volume, _config = setup
    with pytest.raises(VMExists, match="not this pool's"):  # the manager adopts it only when get_vm says so
        provider.create_vm(pool, "test")
    assert provider.get_vm(pool, "test") is None
    with pytest.raises(PermanentError, match="not this pool's"):
        provider.destroy_vm(pool, "test")
    assert conn.lookupByName("test").isActive()


def test_snapshots(conn, setup):
    provider, pool, _volume, _config = setup
    name = unique("vm")
    provider.create_vm(pool, name)
    provider.create_snapshot(pool, name, "s1")
    assert conn.lookupByName(name).snapshotListNames(0) == ["s1"]
    with pytest.raises(PermanentError, match="already has"):
        provider.create_snapshot(pool, name, "s1")
    provider.revert_snapshot(pool, name, "s1")
    with pytest.raises(VMNotFound):
        provider.revert_snapshot(pool, name, "nope")
    with pytest.raises(VMNotFound):
        provider.create_snapshot(pool, unique("vm"), "s1")


def test_a_missing_or_running_template_is_a_permanent_error(conn, setup):
    provider, pool, _volume, _config = setup
    with pytest.raises(PermanentError, match="not found"):
        provider.create_vm(dataclasses.replace(pool, template=unique("missing")), unique("vm"))
    with pytest.raises(PermanentError, match="is running"):
        provider.create_vm(dataclasses.replace(pool, template="test"), unique("vm"))


def test_purge_removes_domains_of_pools_no_longer_configured(conn, setup):
    provider, pool, _volume, config = setup
    other = config.pools[1]
    kept, purged = unique("vm"), unique("vm")
    provider.create_vm(pool, kept)
    provider.create_vm(other, purged)
    assert provider.purge_unconfigured([pool]) == [purged]
    names = {domain.name() for domain in conn.listAllDomains(0)}
    assert kept in names and purged not in names and "test" in names
    assert not {volume for volume in volumes(conn) if volume.startswith(purged)}


def test_a_lost_connection_is_transient_and_reopened(setup):
    provider, pool, _volume, _config = setup
    opened = []

    def flaky_open(uri):
        opened.append(uri)
        return libvirt.open(uri)

    from vmpooler.providers.libvirt.provider import LibvirtProvider
    flaky = LibvirtProvider("libvirt", provider.config, open_connection=flaky_open)
    assert flaky.list_vms(pool) == []
    flaky._connections.get().close()  # as if libvirtd went away under it
    assert flaky.list_vms(pool) == []  # a read is retried once on a new connection
    assert len(opened) == 2
    flaky._connections.get().close()
    with pytest.raises(TransientError):
        flaky.create_snapshot(pool, unique("vm"), "s")
    assert flaky.list_vms(pool) == [] and len(opened) == 3
    flaky.close()


def test_error_mapping():
    from vmpooler.providers.libvirt import errors

    def error(code, domain=0):
        exc = libvirt.libvirtError("boom")
        exc.err = (code, domain, "boom", 2, None, None, None, 0, 0)
        return exc

    assert isinstance(errors.translate(error(libvirt.VIR_ERR_NO_DOMAIN), "x"), VMNotFound)
    assert isinstance(errors.translate(error(libvirt.VIR_ERR_SYSTEM_ERROR), "x"), TransientError)
    assert isinstance(errors.translate(error(libvirt.VIR_ERR_RPC), "x"), TransientError)
    assert isinstance(errors.translate(error(libvirt.VIR_ERR_AUTH_FAILED), "x"), PermanentError)
    assert isinstance(errors.translate(error(libvirt.VIR_ERR_NO_STORAGE_POOL), "x"), PermanentError)
    assert isinstance(errors.translate(error(libvirt.VIR_ERR_DOM_EXIST), "x"), VMExists)
    assert errors.connection_lost(error(libvirt.VIR_ERR_OK, libvirt.VIR_FROM_RPC))
    assert not errors.connection_lost(error(libvirt.VIR_ERR_NO_DOMAIN))


def test_configuration_checks_name_the_key():
    def problems(section=None, pool=None):
        with pytest.raises(ConfigError) as raised:
            build({":providers:": {"kvm": {"provider_class": "libvirt", **(section or {})}},
                   ":pools:": [{"name": "p", "template": "t", "size": 1, "provider": "kvm", **(pool or {})}]}, {},
                  REGISTRY)
        return str(raised.value)

    assert "uri" in problems({"uri": "not a uri"})
    assert "ready_check_port" in problems(pool={"ready_check_port": 70000})
    assert "create_linked_clone" in problems(pool={"create_linked_clone": "maybe"})
    loaded = build({":providers:": {"kvm1": {"provider_class": "libvirt"},
                                    "kvm2": {"provider_class": "libvirt", "uri": "qemu+ssh://h/system"}},
                    ":pools:": [{"name": "a", "template": "t", "size": 1, "provider": "kvm1",
                                 "storage_pool": "sp", "network": "net"},
                                {"name": "b", "template": "t", "size": 1, "provider": "kvm2"}],
                    ":config:": {"domain": "vmpool.test"}}, {}, REGISTRY)
    assert loaded.providers["kvm1"].options.uri == "qemu:///system"
    assert loaded.providers["kvm2"].options.uri == "qemu+ssh://h/system"
    assert loaded.pools[0].fqdn("vm1") == "vm1.vmpool.test"
    first = loaded.pools[0].provider_options
    assert (first.storage_pool, first.network, first.create_linked_clone, first.ready_check_port) == \
        ("sp", "net", True, 22)

"""The libvirt provider and the whole service against a real libvirtd with real QEMU guests (the
lab of tests/libvirt/lab.py): linked clones fill the pool, a checked-out VM answers SSH at
``<vm>.vmpool.test`` with its own hostname, snapshot and revert undo a later write, a new disk
shows up in the guest, DELETE leaves no domain and no volume, a VM removed behind the service's
back and a clone interrupted by kill -9 converge with nothing leaked, and the service rides out a
libvirtd restart. Guests boot under TCG in seconds each; the test boots about 7 of them, at most
three at a time."""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import time
import xml.etree.ElementTree as ET

import pytest

from tests.api.conftest import Client
from tests.libvirt.helpers import libvirt_config, require_libvirt
from tests.libvirt.lab import DOMAIN, NETWORK, STORAGE_POOL, TEMPLATE
from tests.reliability.harness import ServerProcess, pools_full, wait_until
from vmpooler.db import vms as vm_store
from vmpooler.providers.base import TransientError
from vmpooler.providers.registry import REGISTRY

libvirt = require_libvirt()

POOL = {"name": "tiny", "template": TEMPLATE, "size": 2, "provider": "libvirt", "storage_pool": STORAGE_POOL,
        "network": NETWORK, "timeout": 10}
BOOT_TIMEOUT = 240  # seconds for a pool to fill: guests boot in ~5 s alone, far slower on a busy machine
SETTINGS = {"domain": DOMAIN, "check_loop_delay_min": 0.2, "vm_checktime": 0.02, "retry_backoff": 0.5,
            "retry_backoff_max": 2, "reconcile_interval": 2, "shutdown_grace": 5, "status_cache_seconds": 0,
            "task_limit": 3}


class NetnsClient(Client):
    """HTTP to a server listening inside the lab's network namespace."""

    def __init__(self, lab, port: int):
        super().__init__(port)
        self.lab = lab

    def request(self, *args, **kwargs):
        return self.lab.in_netns(super().request, *args, **kwargs)


@pytest.fixture
def server(lab, tmp_path):
    process = ServerProcess(tmp_path, [POOL], SETTINGS, providers={":libvirt:": {"uri": lab.uri}})
    process.command_prefix = lab.netns_command()
    process.client = NetnsClient(lab, process.port)
    yield process
    process.kill_if_running()
    print(process.log()[-20000:])  # shown when the test failed
    config = libvirt_config(lab.uri, [POOL])  # leave the lab as the next test expects it: no VMs
    provider = REGISTRY.build(config)["libvirt"]
    for info in provider.list_vms(config.pools[0]):
        provider.destroy_vm(config.pools[0], info.name)
    provider.close()


def domains(lab) -> dict:
    """Our domains (tagged for pool tiny) by name, with the paths of their disks."""
    from vmpooler.providers.libvirt import domain_xml, inventory
    conn = lab.connect()
    found = {}
    try:
        for domain, tag in inventory.tagged(conn):
            if tag.pool == POOL["name"]:
                try:
                    description = domain.XMLDesc(0)
                except libvirt.libvirtError:
                    continue  # undefined while we looked: gone
                found[domain.name()] = [disk.path for disk in domain_xml.disks(description) if disk.device == "disk"]
    finally:
        conn.close()
    return found


def volumes(lab) -> set:
    conn = lab.connect()
    try:
        storage = conn.storagePoolLookupByName(STORAGE_POOL)
        try:
            storage.refresh(0)  # volumes made through libvirt are listed without it
        except libvirt.libvirtError:
            pass  # "asynchronous jobs running": a volume is being made right now
        return {volume.key() for volume in storage.listAllVolumes(0)}  # a dir pool's key is the path (no call)
    finally:
        conn.close()


def live_names(server) -> set:
    """The pool's VMs the service's database holds as pending, ready or running."""
    database = server.database()
    try:
        return {vm.name for vm in vm_store.live_in_pool(database, POOL["name"])}
    finally:
        database.dispose()


def converged(lab, server) -> bool:
    """Pool full, and libvirt holds exactly the live VMs' domains and volumes (and the template's)."""
    if not pools_full(server.client, [POOL]):
        return False
    found = domains(lab)
    expected_volumes = {path for paths in found.values() for path in paths} | {template_path(lab)}
    return set(found) == live_names(server) and volumes(lab) == expected_volumes


def template_path(lab) -> str:
    return str(lab.images / f"{TEMPLATE}.qcow2")


def wait_converged(lab, server, what: str) -> None:
    wait_until(lambda: converged(lab, server), BOOT_TIMEOUT, what, interval=1)


def wait_tasks_done(server, host: str, count: int) -> None:
    def done():
        tasks = server.client.get(f"/api/v1/vm/{host}").json()[host].get("tasks", [])
        failed = [task for task in tasks if task["state"] == "failed"]
        assert not failed, failed
        return len(tasks) >= count and all(task["state"] == "done" for task in tasks)
    wait_until(done, 60, f"the tasks of {host}", interval=0.5)


def ssh(lab, host: str, command: str) -> str:
    result = lab.ssh(f"{host}.{DOMAIN}", command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_service_on_real_guests(lab, server):
    server.start(timeout=60)
    wait_converged(lab, server, "the pool to fill with linked clones")
    for name, paths in domains(lab).items():  # each a qcow2 volume of its own backed by the template's
        conn = lab.connect()
        volume = ET.fromstring(conn.storageVolLookupByPath(paths[0]).XMLDesc(0))
        conn.close()
        assert volume.findtext("backingStore/path") == template_path(lab), name

    # checkout, then SSH to <vm>.<domain>: the guest learnt its name from SMBIOS and DHCP told DNS
    host = server.client.post(f"/api/v1/vm/{POOL['name']}").json()[POOL["name"]]["hostname"]
    assert ssh(lab, host, "hostname").strip() == host

    # snapshot (with memory), a later write, revert: the write is gone and the guest runs on
    answer = server.client.post(f"/api/v1/vm/{host}/snapshot").json()
    snapshot = answer[host]["snapshot"]
    wait_tasks_done(server, host, 1)
    ssh(lab, host, "echo later > /root/written; sync")
    server.client.post(f"/api/v1/vm/{host}/snapshot/{snapshot}")
    wait_tasks_done(server, host, 2)
    wait_until(lambda: lab.ssh(f"{host}.{DOMAIN}", "ls /root").returncode == 0, 60, "the reverted guest")
    assert "written" not in ssh(lab, host, "ls /root")

    # a disk: a new volume, attached live, seen by the guest as vdb
    server.client.post(f"/api/v1/vm/{host}/disk/1")
    wait_tasks_done(server, host, 3)
    wait_until(lambda: "vdb" in ssh(lab, host, "ls /sys/block"), 30, "vdb in the guest", interval=0.5)

    # DELETE: no domain and no volume of it remain
    disk_paths = domains(lab)[host]
    assert len(disk_paths) == 2
    assert server.client.delete(f"/api/v1/vm/{host}").status == 200
    wait_until(lambda: host not in domains(lab) and not set(disk_paths) & volumes(lab), 60,
               f"{host}'s domain and volumes to go", interval=0.5)
    wait_converged(lab, server, "the pool to refill after a DELETE")

    # a VM removed behind the service's back (as `virsh undefine --remove-all-storage` does):
    # replaced, and the pool converges with nothing of it left
    victim = sorted(live_names(server))[0]
    victim_disks = domains(lab)[victim]
    conn = lab.connect()
    domain = conn.lookupByName(victim)
    domain.destroy()
    domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    for path in victim_disks:
        conn.storageVolLookupByPath(path).delete(0)
    conn.close()
    wait_until(lambda: victim not in live_names(server), 60, f"the service to notice {victim} gone", interval=0.5)
    wait_converged(lab, server, "the pool to replace a VM removed behind its back")

    # libvirtd restarted mid-run: the provider reconnects; a checkout's DELETE and refill work
    lab.restart_libvirtd()
    host = server.client.post(f"/api/v1/vm/{POOL['name']}").json()[POOL["name"]]["hostname"]
    assert server.client.delete(f"/api/v1/vm/{host}").status == 200
    wait_converged(lab, server, "the pool to refill after libvirtd restarted")
    assert host not in domains(lab)

    # without DNS (a provider of this process, outside the namespace's resolver), readiness and
    # the address come from the network's DHCP leases
    check_readiness_through_leases(lab, sorted(live_names(server))[0])

    # kill -9 while a clone is under way: after a restart nothing of it is leaked
    before = set(domains(lab))
    host = server.client.post(f"/api/v1/vm/{POOL['name']}").json()[POOL["name"]]["hostname"]
    assert server.client.delete(f"/api/v1/vm/{host}").status == 200
    wait_until(lambda: set(domains(lab)) - before - {host} or _new_volumes(lab, before), 60, "a clone to begin",
               interval=0.05)
    server.kill()
    server.start(timeout=60)
    wait_converged(lab, server, "the pool to converge after kill -9 during a clone")
    assert server.stop() == 0


def _new_volumes(lab, names) -> set:
    known = {template_path(lab)} | {str(lab.images / f"{name}-vda.qcow2") for name in names}
    return {path for path in volumes(lab) - known if re.search(r"-vd[a-z]+\.qcow2$", path)}



def check_readiness_through_leases(lab, name: str) -> None:
    config = libvirt_config(lab.uri, [POOL])  # no domain: nothing to resolve
    provider = REGISTRY.build(config)["libvirt"]
    pool = config.pools[0]
    try:
        assert lab.in_netns(provider.is_ready, pool, name)
        info = lab.in_netns(provider.get_vm, pool, name)
        assert info.powered_on and info.ip.startswith("192.168.123.") and info.hostname == name
        unready = dataclasses.replace(pool, provider_options=dataclasses.replace(pool.provider_options,
                                                                                 ready_check_port=2))
        assert not lab.in_netns(provider.is_ready, unready, name)  # nothing listens on port 2
    finally:
        provider.close()


def test_a_hung_libvirtd_fails_a_call_instead_of_holding_its_thread(lab):
    """libvirtd stopped (SIGSTOP): keepalive closes the connection and the call fails as transient
    within about KEEPALIVE_INTERVAL x (KEEPALIVE_COUNT + 1) seconds; once it answers again, the
    next call opens a new connection and works."""
    from vmpooler.providers.libvirt.connection import KEEPALIVE_COUNT, KEEPALIVE_INTERVAL
    config = libvirt_config(lab.uri, [POOL])
    provider = REGISTRY.build(config)["libvirt"]
    pool = config.pools[0]
    try:
        assert provider.list_vms(pool) == []
        pid = lab.libvirtd_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(TransientError, match="keepalive"):
                provider.list_vms(pool)
            assert time.monotonic() - began < 3 * KEEPALIVE_INTERVAL * (KEEPALIVE_COUNT + 1)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert provider.list_vms(pool) == []
    finally:
        provider.close()

"""Scenario 4: filling a pool through the vSphere provider, on govmomi's vCenter simulator
(built as the vSphere tests build it: tests/vsphere/helpers.py), against a plain pyVmomi script
that clones and powers on as many VMs with the same concurrency (the floor).

The simulator has no guest OS, so a thread here plays VMware Tools: it sets extraConfig
``SET.guest.ipAddress=127.0.0.1`` (ReconfigVM_Task) on each new powered-on VM, which the simulator
then reports as the guest's IP; the pool's ``ready_check_port`` is a TCP listener opened here.
The floor script does the same reconfiguration and port probe inline, so both runs ask the
simulator for the same work.
"""
from __future__ import annotations

import concurrent.futures
import importlib.util
import socket
import sqlite3
import threading
import time

from benchmarks.harness import Row, Server, wait_until, write_config

TASK_LIMIT = 10  # clones in flight: the service's task_limit and the floor's threads
FOLDER = "bench"


class Listener:
    """A TCP port on 127.0.0.1 that accepts and closes connections: the guests' sshd."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.close()


def _connect(simulator):
    from pyVim.connect import SmartConnect

    return SmartConnect(host="127.0.0.1", port=simulator.port, user="bench", pwd="bench",
                        disableSslCertValidation=True)


def _guest_ip_spec():
    from pyVmomi import vim

    return vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key="SET.guest.ipAddress", value="127.0.0.1")])


class ToolsPlayer:
    """Polls a folder (one property-collector query every 20 ms) and gives each powered-on VM
    its guest IP once, as VMware Tools would on boot."""

    def __init__(self, simulator, folder_path: str, deadline: float):
        self.simulator, self.folder_path, self.deadline = simulator, folder_path, deadline
        self.done: set = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from pyVmomi import vim

        from vmpooler.providers.vsphere import inventory

        content = _connect(self.simulator).RetrieveContent()
        spec = _guest_ip_spec()
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            folder = content.searchIndex.FindByInventoryPath(self.folder_path)
            if folder is not None:
                for vm, props in inventory.contents(content, folder, vim.VirtualMachine,
                                                    ["name", "runtime.powerState"]):
                    if props.get("runtime.powerState") == "poweredOn" and props["name"] not in self.done:
                        vm.ReconfigVM_Task(spec)
                        self.done.add(props["name"])
            self.stopped.wait(0.02)

    def stop(self):
        self.stopped.set()
        self.thread.join(10)


def pyvmomi_floor(simulator, helpers, count: int, port: int) -> float:
    """Seconds from the first clone to the last VM cloned, powered on, given its IP and probed,
    with TASK_LIMIT threads each on its own session (pyVim.task.WaitForTask waits)."""
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    setup = _connect(simulator).RetrieveContent()
    datacenter = setup.searchIndex.FindByInventoryPath(helpers.DATACENTER)
    datacenter.vmFolder.CreateFolder(FOLDER).CreateFolder("floor")
    numbers = iter(range(count))
    lock = threading.Lock()

    def worker():
        content = _connect(simulator).RetrieveContent()
        index = content.searchIndex
        template = index.FindByInventoryPath(f"{helpers.DATACENTER}/vm/{helpers.TEMPLATE}")
        folder = index.FindByInventoryPath(f"{helpers.DATACENTER}/vm/{FOLDER}/floor")
        cluster = index.FindByInventoryPath(f"{helpers.DATACENTER}/host/{helpers.CLUSTER}")
        datastore = index.FindByInventoryPath(f"{helpers.DATACENTER}/datastore/{helpers.DATASTORE}")
        location = vim.vm.RelocateSpec(datastore=datastore, pool=cluster.resourcePool,
                                       diskMoveType="moveChildMostDiskBacking")
        spec_ip = _guest_ip_spec()
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            spec = vim.vm.CloneSpec(location=location, powerOn=True, template=False)
            task = template.CloneVM_Task(folder=folder, name=f"floor{n:04d}", spec=spec)
            WaitForTask(task)
            vm = task.info.result
            if vm.runtime.powerState != "poweredOn":
                WaitForTask(vm.PowerOnVM_Task())
            WaitForTask(vm.ReconfigVM_Task(spec_ip))
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(TASK_LIMIT) as pool:
        for future in [pool.submit(worker) for _ in range(TASK_LIMIT)]:
            future.result()
    return time.perf_counter() - began


def refill_through_vsphere(run) -> list:
    try:
        from tests.vsphere import helpers
        provider = importlib.util.find_spec("vmpooler.providers.vsphere")
    except ImportError as error:
        provider, helpers = None, error
    if provider is None:
        return [Row("4 vsphere", "not run: the vSphere provider or its test helpers are missing", float("nan"), "",
                    note=str(helpers))]
    count = run.pick(200, 30)
    binary = helpers.build_simulator()
    listener = Listener()
    try:
        simulator = helpers.Simulator(binary).start()
        try:
            floor_seconds = pyvmomi_floor(simulator, helpers, count, listener.port)
        finally:
            simulator.close()
        simulator = helpers.Simulator(binary).start()  # a fresh inventory for the service
        try:
            seconds, wall, errors = _fill(run, simulator, helpers, count, listener.port)
        finally:
            simulator.close()
    finally:
        listener.close()
    ok = seconds is not None
    return [Row("4 vsphere", f"fill a pool of {count} VMs (clone, power on, ready)", seconds if ok else float("nan"),
                "s", floor_seconds, f"pyVmomi script, {TASK_LIMIT} threads", "<= 1.1x floor",
                ok and seconds <= 1.1 * floor_seconds,
                f"first clone requested -> last VM ready (from the database); service start -> full: "
                f"{wall if wall is None else round(wall, 1)} s; clone errors: {errors}")]


def _fill(run, simulator, helpers, count: int, port: int) -> tuple:
    db = run.workspace.file("vsphere.db")
    pool = {"name": "vs", "template": helpers.TEMPLATE, "size": count, "provider": "vsphere",
            "folder": f"{FOLDER}/vs", "datastore": helpers.DATASTORE, "clone_target": helpers.CLUSTER,
            "ready_check_port": port}
    settings = {"task_limit": TASK_LIMIT, "create_folders": True, "check_loop_delay_min": 1}
    config = write_config(run.workspace.file("vsphere.yaml"), db, [pool], settings,
                          providers={"vsphere": simulator.options()})
    began = time.monotonic()
    tools = ToolsPlayer(simulator, f"{helpers.DATACENTER}/vm/{FOLDER}/vs", began + 300)
    try:
        with Server(run.workspace, "vmpooler", config, name="vsphere") as server:
            profile = run.profiled(server, "vsphere", 10)
            full = wait_until(lambda: server.get("/api/v1/status?view=pools")[1]["pools"]["vs"]["ready"] >= count,
                              run.pick(240, 90), 0.1)
            run.keep_profile("vSphere fill", profile)
    finally:
        tools.stop()
    wall = None if full is None else time.monotonic() - began
    with sqlite3.connect(db) as conn:
        first, last, ready = conn.execute(
            "SELECT min(created_at), max(ready_at), count(ready_at) FROM vms WHERE pool = 'vs'").fetchone()
        errors = conn.execute("SELECT count(*) FROM vm_events WHERE reason LIKE 'clone attempt%'").fetchone()[0]
    if full is None or ready < count:
        return None, wall, errors
    from datetime import datetime

    seconds = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return seconds, wall, errors

"""A provider that simulates VMs: for demos, tests and benchmarks.

It keeps its inventory in memory, or in a JSON file (``filename``) so that VMs survive a restart
of the service. The original's knobs make it slow or flaky on purpose: every ``*_max_time`` is a
delay drawn uniformly from [0, max] seconds (the original adds one second; we don't, so tests can
run in milliseconds) and every ``*_fail_percent`` a chance of a simulated failure.
"""
from __future__ import annotations

import random
import time
from typing import Optional, Union

from vmpooler.model import NotReady, VMInfo
from vmpooler.providers.base import Provider, TransientError, VMExists, VMNotFound
from vmpooler.providers.dummy.config import DummyOptions
from vmpooler.providers.dummy.inventory import Inventory


class DummyProvider(Provider):
    def __init__(self, name: str, options: DummyOptions):
        super().__init__(name, options)
        self.knobs = dict(options.knobs)
        self.filename: Optional[str] = options.filename
        self._random = random.Random(options.seed)
        self._inventory = Inventory(options.filename)
        # a get_vm that may power off or rename a VM changes the inventory; otherwise it only reads
        self._get_changes = self.knobs["getvm_poweroff_percent"] > 0 or self.knobs["getvm_rename_percent"] > 0
        # in memory and without delays, a call is a few dict operations
        self.answers_at_once = self.filename is None and not any(
            value > 0 for knob, value in self.knobs.items() if knob.endswith("_time"))

    # -- knobs ---------------------------------------------------------------------------
    def _delay(self, knob: str) -> None:
        maximum = self.knobs[knob]
        if maximum > 0:
            time.sleep(self._random.uniform(0, maximum))

    def _chance(self, knob: str) -> bool:
        percent = self.knobs[knob]
        return percent > 0 and self._random.uniform(0, 100) < percent

    def _maybe_fail(self, knob: str, what: str) -> None:
        if self._chance(knob):
            raise TransientError(f"dummy: simulated {what} failure")

    @staticmethod
    def _folder(pool) -> str:
        return pool.provider_options.folder

    def _record(self, name: str) -> dict:
        record = self._inventory.vms.get(name)
        if record is None:
            raise VMNotFound(f"dummy: no VM named {name!r}")
        return record

    @staticmethod
    def _info(name: str, record: dict) -> VMInfo:
        return VMInfo(name=name, powered_on=record["powered_on"], ip=record.get("ip"),
                      hostname=record.get("hostname", name), template=record["template"],
                      extra={"snapshots": list(record["snapshots"]), "disks": list(record["disks"])})

    # -- the interface -------------------------------------------------------------------
    def list_vms(self, pool) -> list:
        self._maybe_fail("listvms_fail_percent", "inventory")
        with self._inventory.reading() as inventory:
            return [self._info(name, inventory.vms[name]) for name in inventory.in_folder(self._folder(pool))]

    def create_vm(self, pool, name: str) -> VMInfo:
        self._delay("createvm_max_time")
        self._maybe_fail("createvm_fail_percent", "clone")
        record = self._new_record(pool, name, time.time() + self._random.uniform(0, self.knobs["boot_max_time"]))
        with self._inventory.changing() as inventory:
            if name in inventory.vms:
                raise VMExists(f"dummy: a VM named {name!r} exists already")
            inventory.add(name, record)
        return self._info(name, record)

    def is_ready(self, pool, name: str) -> Union[bool, NotReady]:
        with self._inventory.reading() as inventory:
            record = inventory.vms.get(name)
            if record is None or not record["powered_on"]:
                return NotReady("no such VM" if record is None else "powered off")
            booted = time.time() >= record["boot_at"]
        if not booted:
            return NotReady("not booted yet")
        return NotReady("its readiness check failed (vmready_fail_percent)") if self._chance(
            "vmready_fail_percent") else True

    def get_vm(self, pool, name: str) -> Optional[VMInfo]:
        with (self._inventory.changing() if self._get_changes else self._inventory.reading()) as inventory:
            record = inventory.vms.get(name)
            if record is None:
                return None
            if self._chance("getvm_poweroff_percent"):
                record["powered_on"] = False
            if self._chance("getvm_rename_percent"):
                record["hostname"] = f"DUMMY{name}"
            return self._info(name, record)

    def destroy_vm(self, pool, name: str) -> None:
        with self._inventory.reading() as inventory:
            exists = name in inventory.vms
        if not exists:
            return
        self._delay("destroyvm_max_shutdown_time")
        self._delay("destroyvm_max_time")
        self._maybe_fail("destroyvm_fail_percent", "destroy")
        with self._inventory.changing() as inventory:
            inventory.discard(name)

    def create_snapshot(self, pool, name: str, snapshot: str) -> None:
        self._delay("createsnapshot_max_time")
        self._maybe_fail("createsnapshot_fail_percent", "snapshot")
        with self._inventory.changing():
            record = self._record(name)
            if snapshot not in record["snapshots"]:
                record["snapshots"].append(snapshot)

    def revert_snapshot(self, pool, name: str, snapshot: str) -> None:
        self._delay("revertsnapshot_max_time")
        self._maybe_fail("revertsnapshot_fail_percent", "revert")
        with self._inventory.reading():
            if snapshot not in self._record(name)["snapshots"]:
                raise VMNotFound(f"dummy: VM {name!r} has no snapshot {snapshot!r}")

    def create_disk(self, pool, name: str, size_gb: int) -> None:
        self._delay("createdisk_max_time")
        self._maybe_fail("createdisk_fail_percent", "disk")
        with self._inventory.changing():
            self._record(name)["disks"].append(f"+{int(size_gb)}gb")

    # -- for tests and operators ---------------------------------------------------------
    def names(self) -> set:
        with self._inventory.reading() as inventory:
            return set(inventory.vms)

    def inject(self, pool, name: str) -> None:
        """Create a VM behind the manager's back, as an operator clicking in vCenter would."""
        with self._inventory.changing() as inventory:
            inventory.add(name, self._new_record(pool, name, boot_at=0))

    def power_off(self, name: str) -> None:
        """Power a VM off behind the manager's back (a clone killed before its power-on)."""
        with self._inventory.changing():
            self._record(name)["powered_on"] = False

    def readdress(self, name: str, ip: str) -> None:
        """Give a VM another address behind the manager's back (a DHCP lease that changed)."""
        with self._inventory.changing():
            self._record(name)["ip"] = ip

    def remove(self, name: str) -> None:
        """Delete a VM behind the manager's back."""
        with self._inventory.changing() as inventory:
            inventory.discard(name)

    def _new_record(self, pool, name: str, boot_at: float) -> dict:
        return {"folder": self._folder(pool), "pool": pool.name, "template": pool.template, "created": time.time(),
                "boot_at": boot_at, "powered_on": True, "ip": "127.0.0.1", "hostname": name,
                "snapshots": [], "disks": []}

    def health(self):
        with self._inventory.reading() as inventory:
            return {"vms": len(inventory.vms)}

    def close(self) -> None:
        self._inventory.close()

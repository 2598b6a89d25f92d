"""The vSphere provider: pools of VMs cloned from templates through vCenter (pyVmomi)."""
from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from typing import Optional, Union

from pyVmomi import vim, vmodl

from vmpooler.model import NotReady, PoolConfig, VMInfo
from vmpooler.providers.base import PermanentError, Provider, ProviderError, VMNotFound
from vmpooler.providers.shared import port_open
from vmpooler.providers.vsphere import clone, devices, errors, inventory, purge
from vmpooler.providers.vsphere.config import ProviderOptions
from vmpooler.providers.vsphere.connection import ConnectionPool, login
from vmpooler.providers.vsphere.tasks import wait_for_task

log = logging.getLogger(__name__)

class VSphereProvider(Provider):
    """``options`` are the section's typed options (config.ProviderOptions); each pool's
    ``provider_options`` are its config.PoolOptions."""

    def __init__(self, name: str, options: ProviderOptions, connect=login):
        super().__init__(name, options)
        self.config = options
        self._connections = ConnectionPool(self.config, connect)
        self._layered_templates: set = set()
        self._layering = threading.Lock()
        self._last_error: Optional[tuple] = None

    # -- plumbing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, what: str, not_found: Optional[type] = None):
        """The service content of a live session, with every error raised in the block mapped
        to a ProviderError naming ``what``, and remembered for health()."""
        try:
            with errors.translated(what, not_found), self._connections.connection() as connection:
                yield connection.content
        except ProviderError as exc:
            if not isinstance(exc, VMNotFound):
                self._last_error = (str(exc), datetime.datetime.now(datetime.timezone.utc))
            raise

    def _wait(self, content, task, what: str, timeout: Optional[float] = None):
        return wait_for_task(content, task, timeout or self.config.vsphere_timeout, what)

    def _datacenter(self, pool: PoolConfig) -> str:
        datacenter = pool.provider_options.datacenter or self.config.datacenter
        if not datacenter:
            raise PermanentError(f"pool {pool.name}: no datacenter (set datacenter on the pool or the provider)")
        return datacenter

    def _folder_path(self, pool: PoolConfig) -> str:
        return f"{self._datacenter(pool)}/vm/{pool.provider_options.folder}"

    def _required(self, content, path: str, kind: str, error: type = PermanentError):
        found = inventory.find(content, path)
        if found is None:
            raise error(f"{kind} {path} not found")
        return found

    def _vm(self, content, pool: PoolConfig, name: str):
        return self._required(content, f"{self._folder_path(pool)}/{name}", "VM", VMNotFound)

    def _vm_properties(self, content, vm, *names) -> dict:
        props = inventory.properties(content, vm, vim.VirtualMachine, names)
        if props is None:
            raise VMNotFound(f"VM {vm} vanished")
        return props

    # -- inventory -----------------------------------------------------------------------
    def list_vms(self, pool: PoolConfig) -> list:
        with self._session(f"listing pool {pool.name}", not_found=PermanentError) as content:
            folder = inventory.find(content, self._folder_path(pool))
            if folder is None:
                self._required(content, self._datacenter(pool), "datacenter")
                return []
            found = inventory.contents(content, folder, vim.VirtualMachine, inventory.VM_PROPERTIES)
        return [inventory.vm_info(props) for _vm, props in found]

    def get_vm(self, pool: PoolConfig, name: str) -> Optional[VMInfo]:
        try:
            with self._session(f"reading VM {name}") as content:
                props = self._vm_properties(content, self._vm(content, pool, name), *inventory.VM_PROPERTIES)
        except VMNotFound:
            return None
        return inventory.vm_info(props)

    def is_ready(self, pool: PoolConfig, name: str) -> Union[bool, NotReady]:
        with self._session(f"checking VM {name}") as content:
            props = self._vm_properties(content, self._vm(content, pool, name), "runtime.powerState",
                                        "guest.ipAddress")
        ip = inventory.usable_ip(props.get("guest.ipAddress"))
        if props.get("runtime.powerState") != "poweredOn":
            return NotReady(f"not powered on ({props.get('runtime.powerState')})")
        if ip is None:
            return NotReady("its guest address never came (VMware Tools reported none usable)")
        port = pool.provider_options.ready_check_port
        # The session is given back before probing: a booting guest must not hold a connection.
        host = pool.fqdn(name) if pool.domain else ip
        if port == 0 or port_open(host, port):
            return True
        return NotReady(f"its port {port} on {host} never opened")

    # -- life cycle ----------------------------------------------------------------------
    def create_vm(self, pool: PoolConfig, name: str) -> VMInfo:
        what = f"cloning {pool.template} as {name}"
        datacenter, options = self._datacenter(pool), pool.provider_options
        with self._session(what, not_found=PermanentError) as content:
            template = self._required(content, f"{datacenter}/vm/{pool.template}", "template")
            folder_path = self._folder_path(pool)
            folder = inventory.ensure_folder(content, datacenter, options.folder, self.config.create_folders)
            if folder is None:
                raise PermanentError(f"folder {folder_path} not found (and create_folders is off)")
            datastore = self._required(content, f"{datacenter}/datastore/{options.datastore}", "datastore")
            resource_pool = self._resource_pool(content, datacenter, template,
                                                options.clone_target or self.config.clone_target)
            # Linked clones follow the global setting unless the pool says create_linked_clone: false.
            linked = self.config.create_linked_clones and options.create_linked_clone is not False
            if linked and self.config.create_template_delta_disks:
                self._add_delta_disks(content, template, f"{datacenter}/vm/{pool.template}")
            spec = clone.clone_spec(name, clone.annotation(pool.name, pool.template, self.config.username),
                                    datastore, resource_pool, linked, options.extra_config)
            # A clone may take as long as the pool lets a VM be pending, not just one API call.
            vm = self._wait(content, template.CloneVM_Task(folder=folder, name=name, spec=spec), what,
                            max(self.config.vsphere_timeout, pool.timeout * 60))
            # CloneSpec.powerOn is not honoured everywhere (the simulator ignores it).
            if self._vm_properties(content, vm, "runtime.powerState").get("runtime.powerState") != "poweredOn":
                self._wait(content, vm.PowerOnVM_Task(), f"powering on {name}")
        return VMInfo(name=name, powered_on=True, template=pool.template)

    def _resource_pool(self, content, datacenter: str, template, clone_target: Optional[str]):
        """The clone_target cluster's root resource pool, else the template's (or its host's)."""
        if clone_target:
            host_folder = self._required(content, f"{datacenter}/host", "datacenter")
            target = inventory.find_compute_resource(content, host_folder, clone_target)
            if target is None:
                raise PermanentError(f"clone_target {clone_target} not found in datacenter {datacenter}")
            return target["resourcePool"]
        props = self._vm_properties(content, template, "resourcePool", "runtime.host")
        if props.get("resourcePool") is not None:
            return props["resourcePool"]
        host = props.get("runtime.host")  # a real template has no resource pool; use its host's
        return host.parent.resourcePool if host is not None else None

    def _add_delta_disks(self, content, template, path: str) -> None:
        """Once per template and process: give its disks a delta layer (see clone.delta_disk_layer)."""
        with self._layering:
            if path in self._layered_templates:
                return
            spec = clone.delta_disk_layer(self._vm_properties(content, template, "config.hardware.device")
                                          .get("config.hardware.device", []))
            if spec is not None:
                self._wait(content, template.ReconfigVM_Task(spec), f"adding delta disks to template {path}")
            self._layered_templates.add(path)

    def destroy_vm(self, pool: PoolConfig, name: str) -> None:
        with self._session(f"destroying VM {name}") as content:
            vm = inventory.find(content, f"{self._folder_path(pool)}/{name}")
            if vm is not None:
                self._destroy(content, vm, name)

    def _destroy(self, content, vm, name: str, power_state: Optional[str] = None) -> None:
        """Power off (when on) and delete ``vm``; one that disappears meanwhile counts as deleted."""
        try:
            if power_state is None:
                power_state = self._vm_properties(content, vm, "runtime.powerState").get("runtime.powerState")
            if power_state == "poweredOn":
                self._wait(content, vm.PowerOffVM_Task(), f"powering off {name}")
            self._wait(content, vm.Destroy_Task(), f"destroying {name}")
        except (VMNotFound, vmodl.fault.ManagedObjectNotFound):
            log.info("VM %s was already gone", name)

    # -- snapshots and disks -------------------------------------------------------------
    def create_snapshot(self, pool: PoolConfig, name: str, snapshot: str) -> None:
        what = f"taking snapshot {snapshot} of {name}"
        with self._session(what) as content:
            vm = self._vm(content, pool, name)
            if inventory.find_snapshot(self._vm_properties(content, vm, "snapshot").get("snapshot"), snapshot):
                raise PermanentError(f"{what}: {name} already has a snapshot of that name")
            # A memory snapshot brings the guest back running; it needs no quiescing.
            self._wait(content, vm.CreateSnapshot_Task(name=snapshot, description="vmpooler", memory=True,
                                                       quiesce=False), what)

    def revert_snapshot(self, pool: PoolConfig, name: str, snapshot: str) -> None:
        what = f"reverting {name} to snapshot {snapshot}"
        with self._session(what) as content:
            vm = self._vm(content, pool, name)
            found = inventory.find_snapshot(self._vm_properties(content, vm, "snapshot").get("snapshot"), snapshot)
            if found is None:
                raise VMNotFound(f"{what}: {name} has no snapshot of that name")
            self._wait(content, found.RevertToSnapshot_Task(), what)

    def create_disk(self, pool: PoolConfig, name: str, size_gb: int) -> None:
        what = f"adding a {size_gb} GB disk to {name}"
        if not isinstance(size_gb, int) or size_gb < 1:
            raise PermanentError(f"{what}: the size must be a whole number of GB, at least 1")
        with self._session(what) as content:
            vm = self._vm(content, pool, name)
            hardware = self._vm_properties(content, vm, "config.hardware.device").get("config.hardware.device", [])
            slot = devices.free_scsi_slot(hardware)
            if slot is None:
                raise PermanentError(f"{what}: no SCSI controller has a free unit")
            path = devices.new_disk_path(pool.provider_options.datastore, name, hardware)
            datacenter = self._required(content, self._datacenter(pool), "datacenter")
            disks = content.virtualDiskManager
            self._wait(content, disks.CreateVirtualDisk_Task(name=path, datacenter=datacenter,
                                                             spec=devices.thin_disk_file(size_gb)), what)
            try:
                self._wait(content, vm.ReconfigVM_Task(devices.attach_disk(path, size_gb, *slot)), what)
            except Exception:
                with contextlib.suppress(Exception):  # best effort: do not leave the file behind
                    self._wait(content, disks.DeleteVirtualDisk_Task(name=path, datacenter=datacenter), what)
                raise

    # -- housekeeping --------------------------------------------------------------------
    def purge_unconfigured(self, pools: list) -> list:
        if not self.config.purge_unconfigured:
            return []
        mine = [pool for pool in pools if pool.provider == self.name]
        templates = {pool.template.rsplit("/", 1)[-1] for pool in mine}
        removed = []
        for base in purge.base_folders(mine, self._datacenter):
            with self._session(f"purging unconfigured folders under {base.path}") as content:
                for path, folder in purge.unconfigured_folders(content, base, self.config.folder_whitelist):
                    removed.extend(self._purge_folder(content, path, folder, templates))
        return removed

    def _purge_folder(self, content, path: str, folder, templates) -> list:
        removed = []
        try:
            doomed, keep_folder = purge.vms_to_destroy(content, folder, templates)
            for vm, props in doomed:
                self._destroy(content, vm, props["name"], props.get("runtime.powerState"))
                removed.append(props["name"])
            if keep_folder:
                log.warning("not removing folder %s: it holds a template", path)
            else:
                self._wait(content, folder.Destroy_Task(), f"destroying folder {path}")
                removed.append(path)
        except Exception as exc:  # one stubborn folder must not stop the rest; the next pass retries
            log.warning("purging folder %s: %s", path, errors.describe(exc))
        return removed

    # -- service -------------------------------------------------------------------------
    def health(self) -> dict:
        message, when = self._last_error or (None, None)
        return {"server": self.config.server, "connections": self._connections.stats(),
                "last_error": message, "last_error_at": when.isoformat(timespec="seconds") if when else None}

    def close(self) -> None:
        self._connections.close()

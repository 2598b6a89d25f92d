"""Helpers for the vSphere provider's tests: building and running govmomi's vCenter simulator
(tests/vcsim/main.go, built with Debian's golang-go and golang-github-vmware-govmomi-dev),
pools and settings for it, and playing VMware Tools' part in a guest that does not exist."""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import select
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from pathlib import Path

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from vmpooler.model import PoolConfig
from vmpooler.providers.vsphere import config as vsphere_config
from vmpooler.providers.vsphere.provider import VSphereProvider
from vmpooler.providers.vsphere.tasks import wait_for_task
from vmpooler.settings import SETTINGS, SETTINGS_BY_KEY, build_settings

GOPATH = "/usr/share/gocode"
GOVMOMI_SIMULATOR = Path(GOPATH, "src/github.com/vmware/govmomi/simulator")
MAIN_GO = Path(__file__).resolve().parent.parent / "vcsim" / "main.go"
INSTALL_HINT = ("apt-get install -y golang-go golang-github-vmware-govmomi-dev "
                "(or set VMPOOLER_SKIP_VSPHERE=1 to skip the vSphere simulator tests)")

# The simulator's VPX model
DATACENTER = "DC0"
TEMPLATE = "DC0_C0_RP0_VM0"
DATASTORE = "LocalDS_0"
CLUSTER = "DC0_C0"


class SimulatorUnavailable(Exception):
    """Go or govmomi is missing, or the build failed; the message says what to install."""


def cache_dir() -> Path:
    configured = os.environ.get("VMPOOLER_TEST_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmpooler-tests"


def build_simulator() -> Path:
    """The simulator program, built once per version of main.go into a cache outside the tree."""
    go = shutil.which("go")
    if go is None:
        raise SimulatorUnavailable(f"the vSphere tests need Go to build the simulator: {INSTALL_HINT}")
    if not GOVMOMI_SIMULATOR.is_dir():
        raise SimulatorUnavailable(f"govmomi's simulator is not in {GOPATH}: {INSTALL_HINT}")
    cache = cache_dir()
    binary = cache / f"vcsim-{hashlib.sha256(MAIN_GO.read_bytes()).hexdigest()[:16]}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{binary.name}.{os.getpid()}.partial"
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="")
    env.setdefault("GOCACHE", str(cache / "go-build"))
    built = subprocess.run([go, "build", "-o", str(partial), str(MAIN_GO)], env=env,
                           capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        raise SimulatorUnavailable(f"building the simulator failed:\n{built.stdout}{built.stderr}")
    os.replace(partial, binary)  # atomic: a concurrent run sees the whole binary or none
    return binary


class Simulator:
    """One simulator process on 127.0.0.1; ``restart`` brings a fresh model back on the same port."""

    def __init__(self, binary: Path, username: str = "", password: str = ""):
        self.binary, self.username, self.password = binary, username, password
        self.port = 0
        self.process = None
        self._log = tempfile.TemporaryFile()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "Simulator":
        """Start and return once it listens (it prints its URL only after binding the port)."""
        # -watch-stdin: the simulator exits when this process dies and the pipe closes
        args = [str(self.binary), "-watch-stdin", "-port", str(self.port)]
        if self.username:
            args += ["-username", self.username, "-password", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            self._log.seek(0)
            raise RuntimeError(f"the simulator did not start: {self._log.read().decode(errors='replace')}")
        self.port = urllib.parse.urlsplit(line.strip()).port
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def options(self, **overrides) -> dict:
        """A ``:providers: vsphere:`` section for this simulator."""
        return {"server": self.server, "username": self.username or "vmpooler",
                "password": self.password or "secret-pw", "insecure": True, "datacenter": DATACENTER,
                **overrides}


def fast_settings(**overrides) -> dict:
    """The global settings (the core ones and vSphere's) with their defaults, quick retries, and
    folders created on demand."""
    settings = {setting.key: setting.default for setting in (*SETTINGS, *vsphere_config.GLOBAL_SETTINGS)}
    settings.update(max_tries=2, retry_factor=0.01, create_folders=True)
    settings.update(overrides)
    return settings


def core_settings(settings: dict):
    """The core Settings among a ``fast_settings()`` mapping."""
    return build_settings({key: value for key, value in settings.items() if key in SETTINGS_BY_KEY})


def provider_options(section: dict, settings=None) -> vsphere_config.ProviderOptions:
    """A section's typed options as the configuration loader makes them (``fast_settings()``
    standing for both the vSphere and the core settings)."""
    settings = settings or fast_settings()
    problems: list = []
    options = vsphere_config.parse_options(section, settings, core_settings(settings), problems)
    assert not problems, problems
    return options


def make_provider_for(section: dict, settings=None, **kwargs) -> VSphereProvider:
    return VSphereProvider("vsphere", provider_options(section, settings), **kwargs)


_pool_numbers = itertools.count(1)


def make_pool(name=None, base="vmpooler", **keys) -> PoolConfig:
    """A vSphere pool with a fresh name, and so a fresh folder ``<base>/<name>``, unless given.
    Keyword arguments are pool keys as a file gives them (None: unset); its vSphere keys are
    typed as the configuration loader types them."""
    raw = dict(name=name or f"pool{next(_pool_numbers)}", template=TEMPLATE, size=1, provider="vsphere",
               datastore=DATASTORE, clone_target=CLUSTER, timeout=SETTINGS_BY_KEY["timeout"].default,
               ready_ttl=SETTINGS_BY_KEY["ready_ttl"].default)
    raw["folder"] = f"{base}/{raw['name']}"
    raw.update(keys)
    raw = {key: value for key, value in raw.items() if value is not None}
    problems: list = []
    options = vsphere_config.parse_pool(raw, problems)
    assert not problems, problems
    return PoolConfig(name=raw["name"], template=raw["template"], size=raw["size"], provider=raw["provider"],
                      timeout=raw["timeout"], ready_ttl=raw["ready_ttl"], check_hostname_for_mismatch=True,
                      provider_options=options, raw=raw)


def vm_at(content, pool: PoolConfig, name: str):
    return content.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/{pool.provider_options.folder}/{name}")


def run_task(content, task):
    return wait_for_task(content, task, 30, "test task")


def set_guest_ip(content, pool: PoolConfig, name: str, ip: str = "127.0.0.1", hostname: str = "") -> None:
    """Play VMware Tools: the simulator reports ``SET.guest.*`` extraConfig keys as guest properties
    of a powered-on VM."""
    reported = {"ipAddress": ip, "hostName": hostname}
    spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=f"SET.guest.{key}", value=value)
                                          for key, value in reported.items() if value])
    run_task(content, vm_at(content, pool, name).ReconfigVM_Task(spec))


@contextlib.contextmanager
def session(simulator):
    """The service content of a session of the test's own on ``simulator`` (logged out on exit)."""
    service_instance = SmartConnect(host="127.0.0.1", port=simulator.port, user="test", pwd="test",
                                    disableSslCertValidation=True)
    try:
        yield service_instance.RetrieveContent()
    finally:
        with contextlib.suppress(Exception):  # the simulator may have been stopped meanwhile
            Disconnect(service_instance)


def _by_name(entities) -> dict:
    """{name: VM} of the VMs among ``entities``, leaving out those destroyed while we read."""
    found = {}
    for entity in entities:
        if isinstance(entity, vim.VirtualMachine):
            try:
                found[entity.name] = entity
            except vmodl.fault.ManagedObjectNotFound:
                pass
    return found


def folder_vms(content, pool) -> dict:
    """{name: VM} of the pool's folder in the simulator (empty while the folder does not exist)."""
    folder = content.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/{pool.provider_options.folder}")
    return _by_name(folder.childEntity) if folder is not None else {}


def anywhere(content, name: str) -> bool:
    """Whether a VM of that name exists anywhere in the simulator's inventory."""
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return name in _by_name(view.view)
    finally:
        view.DestroyView()


def play_tools(content, pool) -> None:
    """VMware Tools in every powered-on guest of the folder: report its IP and hostname."""
    for name, vm in folder_vms(content, pool).items():
        try:
            if vm.runtime.powerState == "poweredOn" and not vm.guest.ipAddress:
                set_guest_ip(content, pool, name, hostname=name)
        except (vmodl.fault.ManagedObjectNotFound, vim.fault.InvalidState, AttributeError):
            pass  # destroyed or powered off meanwhile (AttributeError: its path found nothing)


class ToolsPlayer:
    """A daemon thread playing VMware Tools (``play_tools``) in the folders of ``pools`` every
    ``interval`` seconds through a session of its own, until ``stop`` (or the end of a ``with``).
    It outlives whatever happens to the service; errors (a VM destroyed under it, a task the
    simulator refused) are counted in ``errors`` and the next round carries on."""

    def __init__(self, simulator: Simulator, pools, interval: float = 0.05):
        self.simulator, self.pools, self.interval = simulator, list(pools), interval
        self.errors: list = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmware-tools", daemon=True)

    def __enter__(self) -> "ToolsPlayer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the VMware Tools thread did not stop"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with session(self.simulator) as content:
                    while not self._stop.is_set():
                        for pool in self.pools:
                            try:
                                play_tools(content, pool)
                            except vmodl.MethodFault as error:  # a task refused: try again next round
                                self.errors.append(repr(error)[:200])
                        self.rounds += 1
                        self._stop.wait(self.interval)
            except Exception as error:  # the session broke: log in again
                self.errors.append(repr(error)[:200])
                self._stop.wait(self.interval)

"""A real libvirtd with QEMU guests, isolated from the machine and removed afterwards.

``Lab().start()`` (root, Debian packages from scripts/test.sh) creates a network namespace and runs
virtlogd and libvirtd inside it, in a mount namespace of their own where ``/dev/kvm`` is masked
(this host's KVM boots only special kernels; while libvirtd can see it, every call re-probes
QEMU and takes seconds) and ``/etc/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt`` and
``/var/cache/libvirt``, ``/run`` are private folders of the lab. libvirtd's socket is reached through the URI's
``socket=`` parameter. It defines an isolated network (DHCP, DNS domain ``vmpool.test``, dnsmasq
without its ping before each offer), a storage pool and a template domain, shut off, built from
Debian packages (tests/libvirt/guest.py). ``stop()`` kills what ran in the namespace, by pid, and
deletes everything the lab created.

Guests are reachable only inside the namespace: ``in_netns(fn)`` runs ``fn`` in a thread that
joined it (the threads it starts join it too), ``netns_command`` prefixes a command so that it
runs there and resolves ``<vm>.vmpool.test`` through the network's dnsmasq.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import importlib.util
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

from tests.libvirt import guest as guest_module

DOMAIN = "vmpool.test"
NETWORK = "vmpooler"
STORAGE_POOL = "vmpooler"
TEMPLATE = "tiny-base"
BRIDGE_ADDRESS = "192.168.123.1"
CLONE_NEWNET = 0x40000000

NETWORK_XML = f"""<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>{NETWORK}</name>
  <bridge name='vmpbr0' stp='off' delay='0'/>
  <domain name='{DOMAIN}' localOnly='yes'/>
  <ip address='{BRIDGE_ADDRESS}' netmask='255.255.255.0'>
    <dhcp><range start='192.168.123.10' end='192.168.123.250'/></dhcp>
  </ip>
  <dnsmasq:options><dnsmasq:option value='no-ping'/></dnsmasq:options>
</network>"""

POOL_XML = """<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"""

TEMPLATE_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><source network='{network}'/><model type='virtio'/></interface>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>"""

# Run inside the lab's network namespace, in a new mount namespace (mounts stay private to it).
DAEMONS_SCRIPT = """set -e
mount --bind "$LAB/etc-libvirt" /etc/libvirt
mount --bind "$LAB/var-lib-libvirt" /var/lib/libvirt
mount --bind "$LAB/var-log-libvirt" /var/log/libvirt
mount --bind "$LAB/var-cache-libvirt" /var/cache/libvirt
mount --bind "$LAB/run" /run
if [ -e /dev/kvm ]; then
  # read-only, so that even root's access(W_OK) fails: libvirt then agrees with QEMU that KVM is
  # not there and stops re-probing QEMU's capabilities on every call
  mount --bind "$LAB/kvm-mask" /dev/kvm
  mount -o remount,bind,ro /dev/kvm
fi
for daemon in "$@"; do "$daemon" -d; done
"""


class LabUnavailable(Exception):
    """The lab cannot run here (not root, a package missing, libvirtd did not start)."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


class Lab:
    def __init__(self):
        self.netns = f"vmpl{os.getpid()}"
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="vmpooler-libvirt-lab-"))
        self.socket = self.dir / "run/libvirt/libvirt-sock"
        self.uri = f"qemu:///system?socket={self.socket}"
        self.images = self.dir / "images"
        self.guest = None
        self._executor = None
        self._netns_created = False
        self._made_netns_folder = False  # /run/netns did not exist: stop() removes it

    # -- start ------------------------------------------------------------------------
    def start(self) -> "Lab":
        try:
            self._check()
            self.guest = guest_module.build(self.dir / "guest")
            self._create_netns()
            self._prepare_folders()
            self.start_daemons()
            self._define_resources()
        except BaseException:
            self.stop()
            raise
        return self

    def _check(self) -> None:
        if os.geteuid() != 0:
            raise LabUnavailable("the libvirt lab needs root (network and mount namespaces)")
        missing = [tool for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "dnsmasq", "ip",
                                     "busybox", "dropbear", "dbclient", "mkfs.ext4", "cpio", "modprobe")
                   if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
        if missing:
            raise LabUnavailable(f"missing {', '.join(missing)} (scripts/test.sh installs them)")
        if importlib.util.find_spec("libvirt") is None:
            raise LabUnavailable("libvirt-python is not installed: pip install -e '.[test]'")

    def _create_netns(self) -> None:
        self._made_netns_folder = not os.path.isdir("/run/netns")
        guest_module.run("ip", "netns", "add", self.netns)
        self._netns_created = True
        guest_module.run("ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")
        resolv = pathlib.Path("/etc/netns") / self.netns / "resolv.conf"
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text(f"nameserver {BRIDGE_ADDRESS}\noptions timeout:1 attempts:2\n")

    def _prepare_folders(self) -> None:
        etc = self.dir / "etc-libvirt"
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        shutil.rmtree(etc / "qemu/networks/autostart", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (etc / "qemu/networks/default.xml").unlink()
        with open(etc / "qemu.conf", "a") as conf:
            # the QEMU driver's own mount namespace fails in this sandbox; root reads the lab's files
            conf.write('\nnamespaces = [ ]\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n')
        for folder in ("var-lib-libvirt", "var-log-libvirt", "var-cache-libvirt", "run", "images"):
            (self.dir / folder).mkdir()
        mask = self.dir / "kvm-mask"
        mask.touch()
        mask.chmod(0)

    def start_daemons(self, daemons=("virtlogd", "libvirtd"), timeout: float = 30) -> None:
        """Start virtlogd and libvirtd (``daemons=("libvirtd",)`` after ``kill_libvirtd``)."""
        env = {**os.environ, "LAB": self.dir.as_posix()}
        result = subprocess.run(["ip", "netns", "exec", self.netns, "unshare", "-m", "--propagation", "private",
                                 "sh", "-c", DAEMONS_SCRIPT, "daemons", *daemons], env=env, capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise LabUnavailable(f"starting {', '.join(daemons)} failed: {result.stderr.strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                self.connect().close()
                return
            time.sleep(0.2)
        raise LabUnavailable(f"libvirtd did not answer on {self.socket} within {timeout}s")

    def connect(self):
        import libvirt
        return libvirt.open(self.uri)

    def _define_resources(self) -> None:
        conn = self.connect()
        try:
            # probes QEMU's capabilities now (seconds under TCG) rather than in the first test
            conn.getDomainCapabilities(None, "x86_64", None, "qemu", 0)
            pool = conn.storagePoolDefineXML(POOL_XML.format(name=STORAGE_POOL, path=self.images), 0)
            pool.create(0)
            pool.setAutostart(1)
            network = conn.networkDefineXML(NETWORK_XML)
            network.create()
            network.setAutostart(1)
            disk = self.images / f"{TEMPLATE}.qcow2"
            shutil.copy(self.guest.root_image, disk)
            pool.refresh(0)
            conn.defineXML(self.template_xml(TEMPLATE, disk))
        finally:
            conn.close()

    def template_xml(self, name: str, disk: pathlib.Path) -> str:
        return TEMPLATE_XML.format(name=name, kernel=self.guest.kernel, initrd=self.guest.initrd, disk=disk,
                                   network=NETWORK)

    # -- inside the namespace ------------------------------------------------------------
    def netns_command(self, *command: str) -> list:
        return ["ip", "netns", "exec", self.netns, *command]

    def in_netns(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run in a thread inside the lab's network namespace."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, "libvirt-lab-netns", self._join_netns)
        return self._executor.submit(fn, *args, **kwargs).result()

    def _join_netns(self) -> None:
        with open(f"/run/netns/{self.netns}") as handle:
            if _libc().setns(handle.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")

    def ssh(self, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """``command`` run as root on ``host`` (a name or an address) over dropbear's client."""
        return subprocess.run(self.netns_command("dbclient", "-y", "-y", "-i", str(self.guest.key),
                                                 f"root@{host}", command),
                              capture_output=True, text=True, timeout=timeout)

    # -- stop ---------------------------------------------------------------------------
    def libvirtd_pid(self):
        with contextlib.suppress(OSError, ValueError):
            return int((self.dir / "run/libvirtd.pid").read_text())
        return None

    def restart_libvirtd(self) -> None:
        """SIGKILL libvirtd (guests and dnsmasq keep running, as after a crash) and start it again."""
        self.kill_libvirtd()
        self.start_daemons(("libvirtd",))

    def kill_libvirtd(self) -> None:
        """SIGKILL libvirtd (guests and dnsmasq keep running, as after a crash)."""
        pid = self.libvirtd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
        (self.dir / "run/libvirtd.pid").unlink(missing_ok=True)

    def netns_pids(self) -> list:
        if not self._netns_created:
            return []
        output = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout
        return [int(pid) for pid in output.split()]

    def stop(self) -> None:
        """Stop every process that runs in the namespace and remove all the lab made."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for _ in range(3):
            pids = self.netns_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in pids:
                _wait_gone(pid)
        if self._netns_created:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            shutil.rmtree(pathlib.Path("/etc/netns") / self.netns, ignore_errors=True)
            with contextlib.suppress(OSError):
                pathlib.Path("/etc/netns").rmdir()  # only when empty: it may be someone else's
            if self._made_netns_folder and not os.listdir("/run/netns"):
                # ip netns add made /run/netns a mount point of its own: undo both
                while subprocess.run(["umount", "/run/netns"], capture_output=True).returncode == 0:
                    pass
                with contextlib.suppress(OSError):
                    os.rmdir("/run/netns")
            self._netns_created = False
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)

"""A tiny guest built from Debian packages in seconds: a Debian kernel (downloaded, not installed),
an initramfs with busybox and the few modules that mount the root disk, and a qcow2 root disk with
busybox, udhcpc and dropbear. It reads its name from the SMBIOS serial ``ds=nocloud;h=<name>``
(cloud-init NoCloud's format) and sends it as its DHCP hostname, so the network's dnsmasq resolves
``<name>.<domain>``; dropbear lets the tests log in with a key of their own."""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess

MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4")

# The initramfs loads the modules, mounts /dev/vda and hands over to the root disk's init.
INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules); do insmod /lib/modules/$module 2>/dev/null; done
for _ in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /newroot || exec sh
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""

# PID 1 of the root disk: its name from SMBIOS, DHCP with that name, dropbear on port 22.
ROOT_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
name=$(sed -n 's/.*h=\\([^;]*\\).*/\\1/p' /sys/class/dmi/id/product_serial)
[ -n "$name" ] || name=tiny
hostname "$name"
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -x hostname:"$name" -T 3 -A 1 -t 20 -b -S -s /etc/udhcpc.script
dropbear -R -E -p 22 2>/tmp/dropbear.log
while true; do sleep 3600; done
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""


@dataclasses.dataclass(frozen=True)
class Guest:
    kernel: pathlib.Path
    initrd: pathlib.Path
    root_image: pathlib.Path  # qcow2
    key: pathlib.Path  # dropbear private key for root
    public_key: str


def run(*args, cwd=None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def _kernel(work: pathlib.Path) -> tuple:
    """(vmlinuz, modules folder, version) of the kernel linux-image-amd64 depends on."""
    depends = run("apt-cache", "depends", "linux-image-amd64")
    package = re.search(r"Depends: (linux-image-\S+)", depends).group(1)
    download = work / "download"
    download.mkdir()
    run("apt-get", "download", "-q", package, cwd=download)
    tree = work / "kernel"
    run("dpkg", "-x", next(download.glob("*.deb")).as_posix(), tree.as_posix())
    shutil.rmtree(download)
    version = next((tree / "lib/modules").iterdir()).name
    run("depmod", "-b", tree.as_posix(), version)
    return tree / "boot" / f"vmlinuz-{version}", tree, version


def _module_files(tree: pathlib.Path, version: str) -> list:
    """The .ko files MODULES need, dependencies first."""
    files = []
    for module in MODULES:
        shown = run("modprobe", "-d", tree.as_posix(), "-S", version, "--show-depends", module)
        for line in shown.splitlines():
            if line.startswith("insmod "):
                path = pathlib.Path(line.split()[1])
                if path not in files:
                    files.append(path)
    return files


def _write(path: pathlib.Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _initramfs(work: pathlib.Path, tree: pathlib.Path, version: str) -> pathlib.Path:
    root = work / "initramfs"
    for folder in ("bin", "proc", "sys", "dev", "newroot", "lib/modules"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    names = []
    for module in _module_files(tree, version):
        shutil.copy(module, root / "lib/modules" / module.name)
        names.append(module.name)
    _write(root / "modules", "\n".join(names) + "\n")
    _write(root / "init", INITRAMFS_INIT, 0o755)
    image = work / "initrd.img"
    listing = run("sh", "-c", "find . | sort", cwd=root)
    with open(image, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=listing.encode(), cwd=root, stdout=out,
                       check=True)
    shutil.rmtree(root)
    return image


def _copy_with_libraries(binary: str, root: pathlib.Path) -> None:
    shutil.copy(binary, root / binary.lstrip("/"))
    for path in re.findall(r"(/\S+\.so[.\d]*)", run("ldd", binary)):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(path), target)


def _root_disk(work: pathlib.Path, public_key: str) -> pathlib.Path:
    root = work / "rootfs"
    for folder in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/dropbear", "proc", "sys", "dev", "run", "tmp",
                   "root/.ssh", "var/log"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    for applet in run("/bin/busybox", "--list").split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    _copy_with_libraries("/usr/sbin/dropbear", root)
    _write(root / "sbin/init", ROOT_INIT, 0o755)
    _write(root / "etc/udhcpc.script", UDHCPC_SCRIPT, 0o755)
    _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(root / "etc/group", "root:x:0:\n")
    _write(root / "etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600)
    _write(root / "etc/shells", "/bin/sh\n")
    _write(root / "root/.ssh/authorized_keys", public_key + "\n", 0o600)
    (root / "root").chmod(0o700)
    raw = work / "root.img"
    run("mkfs.ext4", "-q", "-F", "-d", root.as_posix(), "-L", "root", raw.as_posix(), "64M")
    image = work / "root.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw.as_posix(), image.as_posix())
    raw.unlink()
    shutil.rmtree(root)
    return image


def build(work: pathlib.Path) -> Guest:
    """Build the guest's parts under ``work`` (about 5 s, most of it downloading the kernel)."""
    work.mkdir(parents=True, exist_ok=True)
    key = work / "id_dropbear"
    run("dropbearkey", "-t", "ed25519", "-f", key.as_posix())
    public_key = next(line for line in run("dropbearkey", "-y", "-f", key.as_posix()).splitlines()
                      if line.startswith("ssh-"))
    vmlinuz, tree, version = _kernel(work)
    initrd = _initramfs(work, tree, version)
    kernel = work / "vmlinuz"
    shutil.copy(vmlinuz, kernel)
    shutil.rmtree(tree)
    return Guest(kernel=kernel, initrd=initrd, root_image=_root_disk(work, public_key), key=key,
                 public_key=public_key)

"""Domain XML: a clone's definition made from its template's, our tag in ``<metadata>``, and the
disks a definition uses.

A clone is the template's inactive definition with a new ``<name>``, no ``<uuid>`` and no
interface ``<mac>`` (libvirt makes new ones), its NICs on the pool's network, each disk on a volume
of its own, and the SMBIOS system serial ``ds=nocloud;h=<name>`` (cloud-init NoCloud's format) from
which the guest learns its hostname.
"""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Optional

#: the namespace of our ``<metadata>`` element: domains carrying it are ours
NAMESPACE = "https://github.com/vmpooler-py/vmpooler-py/libvirt/1"
METADATA_KEY = "vmpooler"  # the prefix libvirt writes the element with
ET.register_namespace(METADATA_KEY, NAMESPACE)


@dataclasses.dataclass(frozen=True)
class Tag:
    """What we write in a domain's metadata: whose it is."""

    provider: str
    pool: str
    template: str
    created: str  # ISO 8601, UTC


@dataclasses.dataclass(frozen=True)
class Disk:
    target: str  # vda, vdb, ...
    path: Optional[str]  # the file (or volume) it reads, None for an empty drive
    device: str  # disk, cdrom, ...
    source: Optional[tuple] = None  # (storage pool, volume) for <disk type='volume'>


def tag_xml(tag: Tag) -> str:
    element = ET.Element(f"{{{NAMESPACE}}}vm", provider=tag.provider, pool=tag.pool, template=tag.template,
                         created=tag.created)
    return ET.tostring(element, encoding="unicode")


def parse_tag(text: Optional[str]) -> Optional[Tag]:
    """The Tag in the metadata element ``text`` (as ``virDomain.metadata`` returns it), or None."""
    if not text:
        return None
    try:
        element = ET.fromstring(text)
    except ET.ParseError:
        return None
    values = {key: element.get(key) for key in ("provider", "pool", "template", "created")}
    if values["pool"] is None:
        return None
    return Tag(**{key: value or "" for key, value in values.items()})


def disks(domain_xml: str) -> list:
    """Every ``<disk>`` of a definition, in order."""
    found = []
    for disk in ET.fromstring(domain_xml).findall("./devices/disk"):
        target = disk.find("target")
        source = disk.find("source")
        path, volume = None, None
        if source is not None:
            path = source.get("file") or source.get("dev")
            if disk.get("type") == "volume":
                volume = (source.get("pool"), source.get("volume"))
        found.append(Disk(target=(target.get("dev") or "") if target is not None else "", path=path,
                          device=disk.get("device", "disk"), source=volume))
    return found


def free_target(domain_xml: str, bus_prefix: str = "vd") -> str:
    """The first ``vdX`` target no disk of the definition uses."""
    used = {disk.target for disk in disks(domain_xml)}
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"{bus_prefix}{letter}" not in used:
            return f"{bus_prefix}{letter}"
    raise ValueError("every virtio disk target is taken")


def clone_xml(template_xml: str, name: str, volumes: dict, network: Optional[str], tag: Tag) -> str:
    """The definition of clone ``name``: ``volumes`` maps a disk target (vda...) to the path of the
    clone's volume for it; ``network`` (when given) replaces each NIC's network."""
    root = ET.fromstring(template_xml)
    _child(root, "name").text = name
    for element in ("uuid", "metadata", "sysinfo", "description", "title"):
        for found in root.findall(element):
            root.remove(found)
    devices = _child(root, "devices")
    for disk in devices.findall("disk"):
        target = disk.find("target")
        path = volumes.get(target.get("dev") if target is not None else None)
        if path is not None:
            _point_disk_at(disk, path)
    for interface in devices.findall("interface"):
        for element in interface.findall("mac") + interface.findall("target"):
            interface.remove(element)
        if network:
            _join_network(interface, network)
    _set_serial(root, f"ds=nocloud;h={name}")
    metadata = ET.SubElement(root, "metadata")
    metadata.append(ET.fromstring(tag_xml(tag)))
    return ET.tostring(root, encoding="unicode")


def _child(element, tag: str):
    """``element``'s child ``tag``; a definition without one (no name, no devices) is not a domain's."""
    found = element.find(tag)
    if found is None:
        raise ValueError(f"the template's definition has no <{tag}>")
    return found


def _point_disk_at(disk, path: str) -> None:
    disk.set("type", "file")
    for element in disk.findall("source") + disk.findall("backingStore"):
        disk.remove(element)
    driver = disk.find("driver")
    if driver is None:
        driver = ET.SubElement(disk, "driver", name="qemu")
    driver.set("type", "qcow2")
    source = ET.Element("source", file=path)
    disk.insert(list(disk).index(driver) + 1, source)


def _join_network(interface, network: str) -> None:
    interface.set("type", "network")
    for element in interface.findall("source"):
        interface.remove(element)
    interface.insert(0, ET.Element("source", network=network))


def _set_serial(root, serial: str) -> None:
    """SMBIOS system serial ``serial``, and ``<os><smbios mode='sysinfo'/>`` so QEMU passes it."""
    sysinfo = ET.SubElement(root, "sysinfo", type="smbios")
    system = ET.SubElement(sysinfo, "system")
    ET.SubElement(system, "entry", name="serial").text = serial
    os_element = _child(root, "os")
    for smbios in os_element.findall("smbios"):
        os_element.remove(smbios)
    ET.SubElement(os_element, "smbios", mode="sysinfo")


def volume_xml(name: str, capacity_bytes: int, backing: Optional[tuple] = None) -> str:
    """A qcow2 volume ``name``; ``backing`` = (path, format) makes it a linked clone of that file."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(capacity_bytes)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="qcow2")
    if backing is not None:
        store = ET.SubElement(volume, "backingStore")
        ET.SubElement(store, "path").text = backing[0]
        ET.SubElement(store, "format", type=backing[1])
    return ET.tostring(volume, encoding="unicode")


def disk_device_xml(path: str, target: str) -> str:
    """A virtio qcow2 disk on ``path`` as ``target``, for attachDeviceFlags."""
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    return ET.tostring(disk, encoding="unicode")


def snapshot_xml(snapshot: str) -> str:
    element = ET.Element("domainsnapshot")
    ET.SubElement(element, "name").text = snapshot
    ET.SubElement(element, "description").text = "vmpooler"
    return ET.tostring(element, encoding="unicode")

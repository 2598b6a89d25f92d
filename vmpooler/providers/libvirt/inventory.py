"""Which domains are ours and what they are: the tag in our ``<metadata>`` namespace."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional

import libvirt

from vmpooler.model import VMInfo
from vmpooler.providers.libvirt import domain_xml
from vmpooler.providers.libvirt.errors import is_not_found


def tag_of(domain) -> Optional[domain_xml.Tag]:
    """The domain's tag, or None when it carries none (not ours)."""
    try:
        return domain_xml.parse_tag(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, domain_xml.NAMESPACE, 0))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise


def tagged(conn) -> list:
    """(domain, tag) for every domain carrying our tag. A domain that vanishes while listed is left
    out: it is gone."""
    found = []
    for domain in conn.listAllDomains(0):
        try:
            tag = tag_of(domain)
        except libvirt.libvirtError as exc:
            if is_not_found(exc):
                continue
            raise
        if tag is not None:
            found.append((domain, tag))
    return found


def is_running(domain) -> bool:
    return domain.state()[0] in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_BLOCKED)


def vm_info(domain, tag: Optional[domain_xml.Tag], running: Optional[bool] = None, ip: Optional[str] = None,
            hostname: Optional[str] = None) -> VMInfo:
    return VMInfo(name=domain.name(), powered_on=is_running(domain) if running is None else running, ip=ip,
                  hostname=hostname, template=tag.template if tag else None,
                  extra={"created": tag.created if tag else None, "uuid": domain.UUIDString()})


def addresses(domain) -> list:
    """The guest's IPv4 addresses: from the network's DHCP leases, else the guest agent's."""
    for source in (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT):
        try:
            interfaces = domain.interfaceAddresses(source, 0) or {}
        except libvirt.libvirtError:
            continue  # no lease support (test driver) or no agent in the guest
        found = [address["addr"] for interface in interfaces.values() for address in interface.get("addrs") or ()
                 if address.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and address.get("addr")]
        if found:
            return found
    return []


def lease_hostname(conn, domain_description: str) -> Optional[str]:
    """The hostname the guest sent with its DHCP request (what its network's dnsmasq resolves)."""
    for interface in ET.fromstring(domain_description).findall("./devices/interface"):
        source, mac = interface.find("source"), interface.find("mac")
        if source is None or mac is None or not source.get("network"):
            continue
        try:
            leases = conn.networkLookupByName(source.get("network")).DHCPLeases(mac.get("address"), 0)
        except libvirt.libvirtError:
            continue
        for lease in leases or ():
            if lease.get("hostname"):
                return lease["hostname"]
    return None

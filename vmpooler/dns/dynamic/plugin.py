"""``dynamic-dns``: nothing to register. The VMs register themselves (DHCP with dynamic DNS), as
the original's ``dynamic-dns`` assumes; the manager never calls this plugin."""
from __future__ import annotations

from vmpooler.dns.base import DnsPlugin


class DynamicDns(DnsPlugin):
    registers = False

    def create_or_replace_record(self, hostname: str, ip: str) -> None:
        """Nothing: the VM's own DHCP client registers it."""

    def delete_record(self, hostname: str) -> None:
        """Nothing: the lease expires with the VM."""


PLUGIN = DynamicDns

"""The keys of an ``rfc2136`` entry of ``:dns_configs:`` and their typing (no dnspython here:
checking a configuration needs none of the plugins' libraries)."""
from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Optional

from vmpooler.dns.base import DnsSchema
from vmpooler.settings import Setting, read_settings

#: the TSIG algorithms dnspython signs with (RFC 8945 names)
ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")

SETTINGS = (
    Setting("server", "str", None, "Host name or address of the primary server that accepts the updates (required)."),
    Setting("port", "int", 53, "Its DNS port (updates go over TCP).", minimum=1),
    Setting("zone", "str", None, "The zone updated (default: `domain`); `domain` must be in it."),
    Setting("tsig_key_name", "str", None, "Name of the TSIG key the updates are signed with (as the server "
            "knows it); unset: unsigned updates, for a server that allows updates by address."),
    Setting("tsig_secret", "str", None, "The key's secret, base64 as in BIND's `key` clause (required with "
            "`tsig_key_name`). Never logged or shown."),
    Setting("tsig_algorithm", "str", "hmac-sha256", "The key's algorithm: " + ", ".join(ALGORITHMS) + "."),
    Setting("ttl", "int", 300, "TTL of the records, in seconds.", minimum=0),
    Setting("timeout", "number", 5, "Seconds an update may take before it fails (transient: retried).",
            minimum=0.1),
)


@dataclasses.dataclass(frozen=True)
class Rfc2136Options:
    server: str
    port: int
    zone: str
    domain: str
    ttl: int
    timeout: float
    tsig_key_name: Optional[str] = None
    tsig_secret: Optional[str] = dataclasses.field(default=None, repr=False)
    tsig_algorithm: str = "hmac-sha256"


def _in_zone(domain: str, zone: str) -> bool:
    domain, zone = domain.rstrip(".").lower(), zone.rstrip(".").lower()
    return domain == zone or domain.endswith("." + zone)


class Rfc2136Schema(DnsSchema):
    SETTINGS = SETTINGS

    def options(self, section, domain, problems):
        values = read_settings(SETTINGS, section, problems)
        if not values["server"]:
            problems.append("server: required (the primary server's host name or address)")
        zone = values["zone"] or domain
        if not _in_zone(domain, zone):
            problems.append(f"zone: the domain {domain!r} is not in the zone {zone!r}")
        key, secret = values["tsig_key_name"], values["tsig_secret"]
        if bool(key) != bool(secret):
            problems.append("tsig_secret: required with tsig_key_name (and only with it)" if key
                            else "tsig_key_name: required with tsig_secret")
        if secret:
            try:
                base64.b64decode(secret, validate=True)
            except (binascii.Error, ValueError):
                problems.append("tsig_secret: must be base64 (as in BIND's key clause)")
        if values["tsig_algorithm"] not in ALGORITHMS:
            problems.append(f"tsig_algorithm: must be one of {', '.join(ALGORITHMS)}, "
                            f"not {values['tsig_algorithm']!r}")
        return Rfc2136Options(server=values["server"] or "", port=values["port"], zone=zone, domain=domain,
                              ttl=values["ttl"], timeout=values["timeout"], tsig_key_name=key or None,
                              tsig_secret=secret or None, tsig_algorithm=values["tsig_algorithm"])


SCHEMA = Rfc2136Schema()

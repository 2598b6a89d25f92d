"""A real BIND 9 ``named`` for the tests: loopback, a free port, a throw-away configuration.

Never the system instance: its own named.conf, zone files, journal and pid file under a temporary
directory, started in the foreground (``named -g``, our child). Zones:
- ``pool.test``: updates of A and AAAA records signed with the TSIG key ``vmpooler-test``
  (``SECRET``, hmac-sha256) are allowed;
- ``locked.test``: that key may update nothing there (the server answers REFUSED).
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.servers import PausableServer, free_port

NAMED = shutil.which("named") or "/usr/sbin/named"
KEY_NAME = "vmpooler-test"
ZONE, LOCKED_ZONE = "pool.test", "locked.test"

_CONF = """\
options {{
    directory "{root}";
    pid-file "{root}/named.pid";
    session-keyfile "{root}/session.key";
    managed-keys-directory "{root}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ 127.0.0.1; }};
}};
controls {{ }};
key "{key}" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{zone}" {{
    type primary;
    file "{root}/{zone}.db";
    update-policy {{ grant {key} subdomain {zone}. A AAAA; }};
}};
zone "{locked}" {{
    type primary;
    file "{root}/{locked}.db";
    allow-update {{ none; }};
}};
"""

_ZONE = """\
$TTL 300
@   IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300
@   IN NS  ns.{zone}.
ns  IN A   127.0.0.1
"""


class Named(PausableServer):
    def __init__(self, root: str):
        self.root = root
        self.port = free_port()
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.process = None
        self.log = os.path.join(root, "named.log")
        self.conf = os.path.join(root, "named.conf")
        with open(self.conf, "w") as handle:
            handle.write(_CONF.format(root=root, port=self.port, key=KEY_NAME, secret=self.secret, zone=ZONE,
                                      locked=LOCKED_ZONE))
        for zone in (ZONE, LOCKED_ZONE):
            with open(os.path.join(root, f"{zone}.db"), "w") as handle:
                handle.write(_ZONE.format(zone=zone))

    def start(self) -> None:
        with open(self.log, "ab") as log:
            # -g: foreground, logging to stderr; -4: IPv4 only; -n 1: one worker thread
            self.process = subprocess.Popen([NAMED, "-g", "-4", "-n", "1", "-c", self.conf],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"named exited with {self.process.returncode}: {self.tail()}")
            try:
                if self.query(ZONE, "SOA"):
                    return
            except Exception:  # not listening yet
                time.sleep(0.05)
        raise RuntimeError(f"named did not answer within 20 s: {self.tail()}")


    def tail(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-2000:]

    def query(self, name: str, rdtype: str = "A") -> list:
        """The records of ``name`` (text, sorted) the server answers with now; [] for none."""
        response = dns.query.tcp(dns.message.make_query(name, rdtype), "127.0.0.1", port=self.port, timeout=2)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return []
        assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
        wanted = dns.rdatatype.from_text(rdtype)
        return sorted(rdata.to_text() for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset)

    def ttl(self, name: str, rdtype: str = "A") -> int:
        response = dns.query.tcp(dns.message.make_query(name, rdtype), "127.0.0.1", port=self.port, timeout=2)
        return response.answer[0].ttl

    def section(self, **overrides) -> dict:
        """An rfc2136 entry of :dns_configs: for this server."""
        entry = {"dns_class": "rfc2136", "domain": ZONE, "server": "127.0.0.1", "port": self.port,
                 "tsig_key_name": KEY_NAME, "tsig_secret": self.secret, "tsig_algorithm": "hmac-sha256",
                 "ttl": 120, "timeout": 2}
        entry.update(overrides)
        return entry

"""The API versions served side by side: /api/v1, /api/v2 and /api/v3.

One set of handlers serves all three; the route's prefix picks an ``ApiVersion`` that the handler
is given, and a version only changes how answers are rendered and how input is checked:

* v1 (the 0.x API): short hostnames, the domain as a key of its own (``domain``).
* v2 (2.x): hostnames in checkout and on-demand answers are FQDNs (``<name>.<pool's domain>``),
  GET /vm/<host> shows ``fqdn`` instead of ``domain``, and a hostname in a path is cut at its first
  dot; everything else answers as v1 (2.x rerouted it to v1).
* v3 (3.x): v2's rendering plus the 3.8.1 input validation and its messages (``validation.py``),
  ``requested`` in /status ``queue``, and the routes 3.x added (GET /full_config).
"""
from __future__ import annotations

import enum


class ApiVersion(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    V3 = "v3"

    @property
    def prefix(self) -> str:
        return f"/api/{self.value}"

    @property
    def fqdn(self) -> bool:
        """Hostnames in answers carry their pool's domain; no separate ``domain`` key."""
        return self is not ApiVersion.V1

    @property
    def validates(self) -> bool:
        """The 3.8.1 input validation, with the original's messages."""
        return self is ApiVersion.V3

    @property
    def queue_requested(self) -> bool:
        """/status ``queue`` has ``requested`` (3.8.1+: on-demand requests waiting for VMs)."""
        return self is ApiVersion.V3

    def path_hostname(self, raw: str) -> str:
        """A hostname from a path before the common checks: v2 and v3 cut it at its first dot (as
        2.x and 3.x do); v1 keeps it (``BaseHandler.hostname`` strips the configured domain)."""
        return raw.split(".", 1)[0] if self.fqdn else raw

"""Readable hostnames: ``<prefix><adjective>-<noun>``, at most 15 characters before the prefix
(NetBIOS), as the original generates them since 0.8.0."""
from __future__ import annotations

import coolname

MAX_LENGTH = 15


def generate(prefix: str = "") -> str:
    while True:
        slug = coolname.generate_slug(2)
        if len(slug) <= MAX_LENGTH:
            return f"{prefix}{slug}"

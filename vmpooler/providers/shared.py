"""What several providers need alike: the TCP readiness probe and the block that maps a
backend's exceptions onto the provider errors."""
from __future__ import annotations

import contextlib
import socket
from typing import Callable, Optional

from vmpooler.providers.base import ProviderError

READY_CHECK_TIMEOUT = 1.0  # seconds; readiness is polled again soon, so a slow answer is a "no"


def port_open(host: str, port: int, timeout: float = READY_CHECK_TIMEOUT) -> bool:
    """Does ``host`` accept a TCP connection on ``port`` within ``timeout`` seconds?"""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def translating(translate: Callable[..., ProviderError], what: str, not_found: Optional[type] = None):
    """Run the block, re-raising whatever it raises as ``translate(exc, what, not_found)``; a
    ProviderError passes unchanged."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        raise translate(exc, what, not_found) from exc

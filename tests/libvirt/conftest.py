"""Fixtures for the libvirt provider's tests.

``lab`` is a real libvirtd with QEMU guests in a network namespace (tests/libvirt/lab.py), started
once per session and removed afterwards. Where it cannot start (not root, packages missing) its
tests are skipped, unless VMPOOLER_REQUIRE_LIBVIRT=1 (scripts/test.sh sets it): then they fail,
saying why.
"""
from __future__ import annotations

import os

import pytest

from tests.libvirt.lab import Lab, LabUnavailable


@pytest.fixture(scope="session")
def lab():
    try:
        started = Lab().start()
    except LabUnavailable as exc:
        if os.environ.get("VMPOOLER_REQUIRE_LIBVIRT") == "1":
            pytest.fail(f"the libvirt lab cannot start: {exc}", pytrace=False)
        pytest.skip(f"the libvirt lab cannot start: {exc}")
    yield started
    started.stop()

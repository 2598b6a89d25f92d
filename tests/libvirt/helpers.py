"""Building configurations and templates for the libvirt tests."""
from __future__ import annotations

import itertools
import os
import re

import pytest

from tests.conftest import make_config

_serial = itertools.count()


def require_libvirt():
    """libvirt-python, or a skip (a failure when VMPOOLER_REQUIRE_LIBVIRT=1)."""
    if os.environ.get("VMPOOLER_REQUIRE_LIBVIRT") == "1":
        import libvirt
        return libvirt
    return pytest.importorskip("libvirt")


def unique(prefix: str) -> str:
    """A name no other test uses: test:///default is one hypervisor for the whole process."""
    return f"{prefix}{os.getpid()}x{next(_serial)}"


def libvirt_config(uri: str, pools: list, settings=None, **section):
    """A validated Config with one libvirt provider ``libvirt`` serving ``pools``."""
    pools = [{"provider": "libvirt", "size": 1, **pool} for pool in pools]
    return make_config(pools=pools, providers={"libvirt": {"uri": uri, **section}}, settings=settings)


def define_test_template(conn, name: str, pool_name: str = "default-pool"):
    """A shut-off domain ``name`` on test:///default whose disk is a new qcow2 volume; the volume."""
    libvirt = require_libvirt()
    storage = conn.storagePoolLookupByName(pool_name)
    volume = storage.createXML(f"<volume><name>{name}.qcow2</name><capacity unit='M'>64</capacity>"
                               "<target><format type='qcow2'/></target></volume>", 0)
    xml = conn.lookupByName("test").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    xml = re.sub(r"<uuid>.*?</uuid>", "", xml).replace("<name>test</name>", f"<name>{name}</name>")
    conn.defineXML(xml.replace("/guest/diskimage1", volume.path()))
    return volume

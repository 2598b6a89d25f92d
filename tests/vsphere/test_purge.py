"""purge_unconfigured against the simulator."""
import itertools

import pytest

from tests.vsphere.helpers import DATACENTER, TEMPLATE, fast_settings, make_pool


def folder_exists(vc, path):
    return vc.searchIndex.FindByInventoryPath(f"{DATACENTER}/vm/{path}") is not None


_bases = itertools.count(1)


@pytest.fixture
def base():
    return f"purge{next(_bases)}"


@pytest.fixture
def layout(provider, base):
    """Under <base>/: two configured pools (one a level deeper), and folders no pool uses."""
    configured = [make_pool(name="keep1", base=base), make_pool(name="keep2", base=f"{base}/group")]
    unconfigured = {
        "old": make_pool(name="old", base=base),
        "old/sub": make_pool(name="sub", base=f"{base}/old"),
        "allowed": make_pool(name="allowed", base=base),
        "holds-template": make_pool(name="holds-template", base=base),
        "stray": make_pool(name="stray", folder=base),
    }
    for pool in configured:
        provider.create_vm(pool, f"vm-{pool.name}")
    for key, pool in unconfigured.items():
        provider.create_vm(pool, f"vm-{pool.name}")
    provider.create_vm(unconfigured["old"], "vm-old2")
    provider.destroy_vm(unconfigured["old"], "vm-old2")  # leave one powered off: no power-off then
    provider.create_vm(unconfigured["old"], "vm-old3")
    provider.create_vm(unconfigured["holds-template"], TEMPLATE)  # looks like a pool's template
    return configured, unconfigured


def test_purge_is_off_by_default(provider, layout, vc, base):
    configured, _ = layout
    assert provider.purge_unconfigured(configured) == []
    assert folder_exists(vc, f"{base}/old")


@pytest.mark.parametrize("where", ["provider", "settings"])
def test_purge_removes_unconfigured_folders_and_their_vms(make_provider, layout, vc, base, where):
    configured, unconfigured = layout
    if where == "provider":
        provider = make_provider(purge_unconfigured_folders=True, folder_whitelist=["allowed"])
    else:
        provider = make_provider(settings=fast_settings(purge_unconfigured_folders=True),
                                 folder_whitelist=[f"{base}/allowed"])
    others = [make_pool(name="other", base=base, provider="another-provider")]
    removed = provider.purge_unconfigured(configured + others)
    assert sorted(removed) == sorted(["vm-old", "vm-old3", "vm-sub", f"{base}/old", "vm-holds-template"])
    assert not folder_exists(vc, f"{base}/old")
    for kept in (f"{base}/keep1/vm-keep1", f"{base}/group/keep2/vm-keep2", f"{base}/allowed/vm-allowed",
                 f"{base}/vm-stray", f"{base}/holds-template/{TEMPLATE}"):
        assert folder_exists(vc, kept), kept
    assert not folder_exists(vc, f"{base}/holds-template/vm-holds-template")
    assert provider.purge_unconfigured(configured) == []  # nothing left to do

"""The dummy provider implements the whole interface, with the original's knobs."""
import pytest

from tests.conftest import make_config
from vmpooler.providers.base import TransientError, VMNotFound
from vmpooler.providers.dummy.config import parse_options
from vmpooler.providers.dummy.provider import DummyProvider


@pytest.fixture
def pool():
    return make_config(pools=[{"name": "p", "template": "t", "size": 1}]).pools[0]


def provider(**section):
    problems: list = []
    options = parse_options(section, problems)
    assert not problems
    return DummyProvider("dummy", options)


def test_clone_list_get_ready_destroy(pool):
    dummy = provider()
    info = dummy.create_vm(pool, "vm1")
    assert info.name == "vm1" and info.powered_on and info.template == "t"
    assert [i.name for i in dummy.list_vms(pool)] == ["vm1"]
    assert dummy.is_ready(pool, "vm1")
    assert dummy.get_vm(pool, "vm1").hostname == "vm1"
    dummy.destroy_vm(pool, "vm1")
    dummy.destroy_vm(pool, "vm1")  # already gone: still fine
    assert dummy.get_vm(pool, "vm1") is None and dummy.list_vms(pool) == []
    assert not dummy.is_ready(pool, "vm1")


def test_snapshots_and_disks(pool):
    dummy = provider()
    dummy.create_vm(pool, "vm1")
    dummy.create_snapshot(pool, "vm1", "s1")
    dummy.revert_snapshot(pool, "vm1", "s1")
    with pytest.raises(VMNotFound):
        dummy.revert_snapshot(pool, "vm1", "s2")
    dummy.create_disk(pool, "vm1", 8)
    assert dummy.get_vm(pool, "vm1").extra == {"snapshots": ["s1"], "disks": ["+8gb"]}
    with pytest.raises(VMNotFound):
        dummy.create_snapshot(pool, "nope", "s1")


def test_failure_knobs_raise_transient_errors(pool):
    dummy = provider(createvm_fail_percent=100, seed=1)
    with pytest.raises(TransientError):
        dummy.create_vm(pool, "vm1")
    dummy.knobs["createvm_fail_percent"] = 0
    dummy.create_vm(pool, "vm1")
    dummy.knobs["destroyvm_fail_percent"] = 100
    with pytest.raises(TransientError):
        dummy.destroy_vm(pool, "vm1")


def test_boot_time_delays_readiness(pool):
    dummy = provider(boot_max_time=3600, seed=3)
    dummy.create_vm(pool, "vm1")
    assert not dummy.is_ready(pool, "vm1")


def test_inventory_file_survives_a_new_instance(pool, tmp_path):
    path = str(tmp_path / "inv.json")
    first = provider(filename=path)
    first.create_vm(pool, "vm1")
    first.create_snapshot(pool, "vm1", "s1")
    second = provider(filename=path)
    assert [i.name for i in second.list_vms(pool)] == ["vm1"]
    assert second.get_vm(pool, "vm1").extra["snapshots"] == ["s1"]


def test_option_validation_names_the_key():
    problems: list = []
    parse_options({"createvm_fail_percent": 150, "boot_max_time": "slow", "filename": 3}, problems)
    assert any(p.startswith("createvm_fail_percent") for p in problems)
    assert any(p.startswith("boot_max_time") for p in problems)
    assert any(p.startswith("filename") for p in problems)


def test_folder_is_the_dummy_pools_own_option_defaulting_to_the_pool_name():
    config = make_config(pools=[{"name": "a", "template": "t", "size": 1, "folder": "shared"},
                                {"name": "b", "template": "t", "size": 1, "folder": "shared"},
                                {"name": "c", "template": "t", "size": 1}])
    assert not config.warnings
    a, b, c = (config.pools_by_name[name] for name in "abc")
    assert (a.provider_options.folder, c.provider_options.folder) == ("shared", "c")
    dummy = provider()
    dummy.create_vm(a, "vm-a")
    dummy.create_vm(c, "vm-c")
    assert [i.name for i in dummy.list_vms(b)] == ["vm-a"]  # same folder, same listing
    assert [i.name for i in dummy.list_vms(c)] == ["vm-c"]


def test_processes_sharing_one_inventory_file_see_one_backend(pool, tmp_path):
    """Two service processes (here two providers) on one file: what one clones the other lists,
    checks and destroys, as whichever process leads after a failover must."""
    shared = str(tmp_path / "inventory.json")
    first, second = provider(filename=shared), provider(filename=shared)
    first.create_vm(pool, "vm1")
    assert [i.name for i in second.list_vms(pool)] == ["vm1"] and second.is_ready(pool, "vm1")
    second.create_snapshot(pool, "vm1", "s1")
    first.revert_snapshot(pool, "vm1", "s1")  # first sees the snapshot second took
    second.destroy_vm(pool, "vm1")
    assert first.get_vm(pool, "vm1") is None and first.names() == set()


def test_concurrent_processes_lose_no_vm_in_a_shared_file(tmp_path):
    """Real processes cloning into one file at once: every VM each of them created is in it
    (the file lock serialises their read-modify-write; without it, updates are lost)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = tmp_path / "inventory.json"
    script = (
        "import sys\n"
        "from tests.conftest import make_config\n"
        "from tests.unit.test_dummy import provider\n"
        "pool = make_config(pools=[{'name': 'p', 'template': 't', 'size': 1}]).pools[0]\n"
        "dummy = provider(filename=sys.argv[1])\n"
        "for i in range(60):\n"
        "    dummy.create_vm(pool, f'{sys.argv[2]}-{i}')\n"
        "    if i % 3 == 0:\n"
        "        dummy.destroy_vm(pool, f'{sys.argv[2]}-{i}')\n")
    env = {**os.environ, "PYTHONPATH": root}
    workers = [subprocess.Popen([sys.executable, "-c", script, str(shared), name], cwd=root, env=env)
               for name in ("a", "b", "c")]
    assert [worker.wait(120) for worker in workers] == [0, 0, 0]
    expected = {f"{name}-{i}" for name in "abc" for i in range(60) if i % 3}
    assert provider(filename=str(shared)).names() == expected

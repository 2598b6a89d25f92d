"""The vSphere provider's configuration keys, their checks and the parsed options."""
import pytest

from vmpooler import config
from vmpooler.providers.registry import REGISTRY
from vmpooler.providers.vsphere.config import parse_options, parse_pool
from tests.vsphere.helpers import core_settings, fast_settings, make_pool, provider_options

GOOD = {"server": "vc.example.test", "username": "svc", "password": "pw", "datacenter": "DC0"}


def option_problems(section) -> list:
    problems: list = []
    parse_options(section, fast_settings(), core_settings(fast_settings()), problems)
    return problems


def pool_problems(pool) -> list:
    problems: list = []
    parse_pool(pool, problems)
    return problems


def test_complete_options_have_no_problems():
    assert option_problems(GOOD) == []
    assert option_problems({**GOOD, "server": "vc.example.test:8443", "insecure": "yes", "connection_pool_size": 4,
                            "vsphere_timeout": 0.5, "folder_whitelist": ["a", "b"]}) == []


def test_missing_connection_keys_are_named():
    assert option_problems({}) == ["server: required", "username: required", "password: required"]
    assert option_problems({**GOOD, "password": ""}) == ["password: required"]


@pytest.mark.parametrize("key, value, message", [
    ("server", "vc:notaport", "server: "),
    ("server", "vc:99999", "server: "),
    ("server", "user@vc", "server: must be a host name or host:port"),
    ("insecure", "maybe", "insecure: must be true or false"),
    ("connection_pool_size", 0, "connection_pool_size: must be greater than 0"),
    ("connection_pool_size", "many", "connection_pool_size: must be an integer"),
    ("vsphere_timeout", -1, "vsphere_timeout: must be greater than 0"),
    ("folder_whitelist", {"a": 1}, "folder_whitelist: must be a list of strings"),
])
def test_bad_values_are_named(key, value, message):
    problems = option_problems({**GOOD, key: value})
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_pool_checks():
    assert pool_problems({"folder": "a/b", "datastore": "ds"}) == []
    assert pool_problems({}) == ["folder: required for a vSphere pool", "datastore: required for a vSphere pool"]
    problems = pool_problems({"folder": "f", "datastore": "d", "create_linked_clone": "x", "ready_check_port": 70000})
    assert problems[0].startswith("create_linked_clone: must be true or false")
    assert problems[1].startswith("ready_check_port: must be between 0")


def test_config_loader_reports_vsphere_problems_with_their_place():
    raw = {"providers": {"vsphere": {"username": "svc", "password": "pw", "bogus": 1}},
           "pools": [{"name": "p", "template": "t", "size": 1, "provider": "vsphere", "datastore": "ds",
                      "ready_check_port": 2222, "other": 1}]}
    with pytest.raises(config.ConfigError) as raised:
        config.build(raw, {}, REGISTRY)
    assert "providers.vsphere.server: required" in raised.value.problems
    assert "pools[p].folder: required for a vSphere pool" in raised.value.problems
    raw["providers"]["vsphere"]["server"] = "vc"
    raw["pools"][0]["folder"] = "vmpooler/p"
    loaded = config.build(raw, {}, REGISTRY)
    assert "providers.vsphere.bogus is not a known key; ignored" in loaded.warnings
    assert "pools[p].other is not a known key; ignored" in loaded.warnings
    assert not any("ready_check_port" in warning for warning in loaded.warnings)


def test_parsed_options_apply_defaults_and_hide_the_password():
    options = provider_options(GOOD, fast_settings(task_limit=7))
    assert (options.host, options.port, options.server) == ("vc.example.test", 443, "vc.example.test")
    assert options.pool_size == 7 and options.vsphere_timeout == 60 and options.insecure is False
    assert "pw" not in repr(options)
    small = provider_options({**GOOD, "server": "[::1]:8443"}, fast_settings(task_limit=1))
    assert (small.host, small.port, small.server, small.pool_size) == ("::1", 8443, "[::1]:8443", 2)
    assert provider_options({**GOOD, "connection_pool_size": 3}).pool_size == 3


def test_purge_is_on_from_the_provider_or_the_settings():
    assert not provider_options(GOOD).purge_unconfigured
    assert provider_options({**GOOD, "purge_unconfigured_folders": True}).purge_unconfigured
    assert provider_options({**GOOD, "purge_unconfigured_resources": "true"}).purge_unconfigured
    assert provider_options(GOOD, fast_settings(purge_unconfigured_folders=True)).purge_unconfigured


def test_pool_keys_are_typed_once_with_their_defaults():
    pool = make_pool(folder="/vmpooler/p/", create_linked_clone="no", ready_check_port="0").provider_options
    assert (pool.folder, pool.create_linked_clone, pool.ready_check_port) == ("vmpooler/p", False, 0)
    unset = make_pool().provider_options
    assert (unset.ready_check_port, unset.create_linked_clone, unset.datacenter) == (22, None, None)


def test_the_loader_gives_vsphere_its_global_keys_and_keeps_them_out_of_the_core_settings():
    raw = {":config:": {"create_folders": "yes", "clone_target": "C1", "max_tries": 5, "retry_factor": 1},
           ":providers:": {"vsphere": GOOD},
           ":pools:": [{"name": "p", "template": "t", "size": 1, "folder": "f", "datastore": "ds"}]}
    loaded = config.build(raw, {"CREATE_LINKED_CLONES": "false"}, REGISTRY)
    options = loaded.providers["vsphere"].options
    assert (options.create_folders, options.clone_target, options.max_tries, options.retry_factor) == (True, "C1", 5, 1)
    assert options.create_linked_clones is False  # from the environment
    assert not {"create_folders", "clone_target", "max_tries", "retry_factor"} & set(vars(loaded.settings))
    assert loaded.pools_by_name["p"].provider_options.folder == "f"
    assert not loaded.warnings
    with pytest.raises(config.ConfigError, match="config.max_tries: must be an integer"):
        config.build({**raw, ":config:": {"max_tries": "often"}}, {}, REGISTRY)


def test_vsphere_keys_without_a_vsphere_provider_are_warned_about():
    raw = {":config:": {"create_folders": True}, ":pools:": [{"name": "p", "template": "t", "size": 1}]}
    loaded = config.build(raw, {}, REGISTRY)
    assert loaded.warnings == ["config.create_folders is read by the vsphere provider, which no provider here uses; "
                               "ignored"]

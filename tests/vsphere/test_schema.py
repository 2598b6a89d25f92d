"""The vSphere provider's configuration keys, their checks and the parsed options."""
import pytest

from vmpooler import config
from vmpooler.providers.base import PermanentError
from vmpooler.providers.vsphere import VSphereProvider, schema
from tests.vsphere.helpers import fast_settings

GOOD = {"server": "vc.example.test", "username": "svc", "password": "pw", "datacenter": "DC0"}


def test_complete_options_have_no_problems():
    assert VSphereProvider.validate_options(GOOD) == []
    assert VSphereProvider.validate_options({**GOOD, "server": "vc.example.test:8443", "insecure": "yes",
                                             "connection_pool_size": 4, "vsphere_timeout": 0.5,
                                             "folder_whitelist": ["a", "b"]}) == []


def test_missing_connection_keys_are_named():
    assert VSphereProvider.validate_options({}) == ["server: required", "username: required",
                                                    "password: required"]
    assert VSphereProvider.validate_options({**GOOD, "password": ""}) == ["password: required"]


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
    problems = VSphereProvider.validate_options({**GOOD, key: value})
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_pool_checks():
    assert VSphereProvider.validate_pool({"folder": "a/b", "datastore": "ds"}) == []
    assert VSphereProvider.validate_pool({}) == ["folder: required for a vSphere pool",
                                                 "datastore: required for a vSphere pool"]
    problems = VSphereProvider.validate_pool({"folder": "f", "datastore": "d", "create_linked_clone": "x",
                                              "ready_check_port": 70000})
    assert problems[0].startswith("create_linked_clone: must be true or false")
    assert problems[1].startswith("ready_check_port: must be between 0")


def test_config_loader_reports_vsphere_problems_with_their_place():
    raw = {"providers": {"vsphere": {"username": "svc", "password": "pw", "bogus": 1}},
           "pools": [{"name": "p", "template": "t", "size": 1, "provider": "vsphere", "datastore": "ds",
                      "ready_check_port": 2222, "other": 1}]}
    with pytest.raises(config.ConfigError) as raised:
        config.build(raw, environ={})
    assert "providers.vsphere.server: required" in raised.value.problems
    assert "pools[p].folder: required for a vSphere pool" in raised.value.problems
    raw["providers"]["vsphere"]["server"] = "vc"
    raw["pools"][0]["folder"] = "vmpooler/p"
    loaded = config.build(raw, environ={})
    assert "providers.vsphere.bogus is not a known key; ignored" in loaded.warnings
    assert "pools[p].other is not a known key; ignored" in loaded.warnings
    assert not any("ready_check_port" in warning for warning in loaded.warnings)


def test_parsed_options_apply_defaults_and_hide_the_password():
    options = schema.ProviderOptions.parse(GOOD, fast_settings(task_limit=7))
    assert (options.host, options.port, options.server) == ("vc.example.test", 443, "vc.example.test")
    assert options.pool_size == 7 and options.vsphere_timeout == 60 and options.insecure is False
    assert "pw" not in repr(options)
    small = schema.ProviderOptions.parse({**GOOD, "server": "[::1]:8443"}, fast_settings(task_limit=1))
    assert (small.host, small.port, small.server, small.pool_size) == ("::1", 8443, "[::1]:8443", 2)
    assert schema.ProviderOptions.parse({**GOOD, "connection_pool_size": 3}, fast_settings()).pool_size == 3


def test_purge_is_on_from_the_provider_or_the_settings():
    parse = schema.ProviderOptions.parse
    assert not parse(GOOD, fast_settings()).purge_unconfigured
    assert parse({**GOOD, "purge_unconfigured_folders": True}, fast_settings()).purge_unconfigured
    assert parse({**GOOD, "purge_unconfigured_resources": "true"}, fast_settings()).purge_unconfigured
    assert parse(GOOD, fast_settings(purge_unconfigured_folders=True)).purge_unconfigured


@pytest.mark.parametrize("default, pool_value, expected", [
    (True, None, True), (True, False, False), (True, "no", False), (False, None, False), (False, True, False)])
def test_linked_clone_choice(default, pool_value, expected):
    assert schema.linked_clone({"create_linked_clone": pool_value}, default) is expected


def test_ready_check_port_defaults_to_ssh():
    assert schema.ready_check_port({}) == 22
    assert schema.ready_check_port({"ready_check_port": "0"}) == 0


def test_invalid_options_refuse_to_build_a_provider():
    with pytest.raises(PermanentError, match="providers.vs: server: required"):
        VSphereProvider("vs", {"username": "u", "password": "p"}, fast_settings())

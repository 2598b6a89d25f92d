"""Configuration: the original's format, environment overrides, and errors that name the key."""
import os

import pytest

from vmpooler import config
from vmpooler.config import ConfigError
from vmpooler.providers.registry import REGISTRY
from vmpooler.settings import SETTINGS_BY_KEY, did_you_mean, unknown_key

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOOD = {
    ":config:": {"task_limit": 4, "domain": "example.com", "allowed_tags": ["user"], "logfile": "/x.log"},
    ":providers:": {"dummy": {"createvm_max_time": 2}},
    ":pools:": [{"name": "debian-7-i386", "alias": ["debian-7-32"], "template": "templates/debian", "size": 5,
                 "timeout": 10, "ready_ttl": 30},
                {"name": "centos", "alias": "el", "template": "templates/centos", "size": 0}],
    ":tagfilter:": {"url": "(.*)\\/"},
    ":redis:": {"server": "localhost"},
}


def build(raw, environ):
    return config.build(raw, environ, REGISTRY)


def load(path, environ):
    return config.load(path, environ, REGISTRY)


def problems(raw, environ=None):
    with pytest.raises(ConfigError) as caught:
        build(raw, environ or {})
    return caught.value.problems


def test_original_format_with_colons_loads_with_warnings():
    loaded = build(GOOD, {})
    assert loaded.settings.task_limit == 4 and loaded.settings.vm_lifetime == 24
    assert loaded.pools_by_name["debian-7-i386"].timeout == 10
    assert loaded.pools_by_name["centos"].timeout == 15  # global default
    assert loaded.backends("debian-7-32") == ["debian-7-i386"] and loaded.backends("el") == ["centos"]
    assert loaded.tagfilter["url"].pattern == "(.*)\\/"
    assert any(":redis:" in note for note in loaded.notes)  # no use here: a note, not a warning
    assert any("config.logfile" in note for note in loaded.notes)
    assert loaded.database_url == config.DEFAULT_DATABASE_URL


def test_keys_without_colons_work_too():
    plain = {key.strip(":"): value for key, value in GOOD.items()}
    assert build(plain, {}).settings.domain == "example.com"


def test_one_alias_spanning_several_pools():
    raw = {"pools": [{"name": "a", "template": "t", "size": 1, "alias": ["both"]},
                     {"name": "b", "template": "t", "size": 1, "alias": ["both"]}]}
    assert build(raw, {}).backends("both") == ["a", "b"]


def test_environment_overrides_are_parsed_by_type():
    loaded = build(GOOD, {"TASK_LIMIT": "7", "REQUEST_LOGGER": "yes", "EXPERIMENTAL_FEATURES": "false",
                          "VM_LIFETIME": "2.5", "DATABASE_URL": "sqlite:////tmp/other.db"})
    assert loaded.settings.task_limit == 7
    assert loaded.settings.request_logger is True
    assert loaded.settings.experimental_features is False
    assert loaded.settings.vm_lifetime == 2.5
    assert loaded.database_url == "sqlite:////tmp/other.db"


def test_bad_environment_override_names_the_variable():
    assert any("TASK_LIMIT" in p and "config.task_limit" in p for p in problems(GOOD, {"TASK_LIMIT": "many"}))


@pytest.mark.parametrize("pool, needle", [
    ({"template": "t", "size": 1}, "pools[0].name"),
    ({"name": "x", "size": 1}, "pools[x].template"),
    ({"name": "x", "template": "t", "size": -1}, "pools[x].size"),
    ({"name": "x", "template": "t", "size": "five"}, "pools[x].size"),
    ({"name": "x", "template": "t"}, "pools[x].size"),
    ({"name": "x", "template": "t", "size": 1, "provider": "nope"}, "pools[x].provider"),
    ({"name": "x", "template": "t", "size": 1, "timeout": "soon"}, "pools[x].timeout"),
])
def test_invalid_pools_name_the_key(pool, needle):
    assert any(needle in p for p in problems({"pools": [pool]}))


def test_unknown_provider_class_and_wrong_types_are_reported_together():
    raw = {"providers": {"ec2": {}}, "config": {"task_limit": "x", "vm_lifetime": True},
           "pools": [{"name": "x", "template": "t", "size": 1, "provider": "ec2"}]}
    found = problems(raw)
    assert any("providers.ec2" in p and "unknown provider" in p for p in found)
    assert any("config.task_limit" in p for p in found)
    assert any("config.vm_lifetime" in p for p in found)


def test_duplicate_pool_and_alias_clash():
    raw = {"pools": [{"name": "a", "template": "t", "size": 1}, {"name": "a", "template": "t", "size": 1},
                     {"name": "b", "template": "t", "size": 1, "alias": ["a"]}]}
    found = problems(raw)
    assert any("defined twice" in p for p in found) and any("alias 'a'" in p for p in found)


def test_auth_rules():
    base = {"pools": [{"name": "a", "template": "t", "size": 1}]}
    assert any("auth.provider" in p for p in problems({**base, "auth": {"provider": "dummy"}}))
    assert build({**base, "auth": {"provider": "dummy"}}, {"VMPOOLER_DEBUG": "1"}).auth["provider"] == "dummy"
    assert any("auth.provider" in p for p in problems({**base, "auth": {"provider": "kerberos"}}))
    assert any("auth.ldap.host" in p for p in problems({**base, "auth": {"provider": "ldap"}}))
    assert any("auth.users.jdoe" in p for p in problems({**base, "auth": {"provider": "users",
                                                                         "users": {"jdoe": "plaintext"}}}))


def test_bad_tagfilter_and_dummy_knob():
    raw = {"providers": {"dummy": {"createvm_fail_percent": 101}}, "tagfilter": {"url": "("},
           "pools": [{"name": "a", "template": "t", "size": 1}]}
    found = problems(raw)
    assert any("tagfilter.url" in p for p in found)
    assert any("providers.dummy.createvm_fail_percent" in p for p in found)


def test_sources_in_the_original_order(tmp_path):
    path = tmp_path / "vmpooler.yaml"
    path.write_text(":pools:\n  - name: fromfile\n    template: t\n    size: 1\n")
    assert load(str(path), {}).pools[0].name == "fromfile"
    assert load(None, {"VMPOOLER_CONFIG_FILE": str(path)}).pools[0].name == "fromfile"
    text = ":pools:\n  - name: fromenv\n    template: t\n    size: 1\n"
    assert load(None, {"VMPOOLER_CONFIG": text, "VMPOOLER_CONFIG_FILE": str(path)}).pools[0].name == "fromenv"
    defaults = load(None, {})
    assert [(p.name, p.size) for p in defaults.pools] == [("debian-7-i386", 5), ("debian-7-x86_64", 3)]


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "missing.yaml"), {})
    bad = tmp_path / "bad.yaml"
    bad.write_text(":pools: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(bad), {})


def _text(*parts):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, *parts), encoding="utf-8") as handle:
        return handle.read()


def test_every_setting_is_documented_in_the_example_and_docs():
    example, docs = _text("vmpooler.yaml.example"), _text("docs", "configuration.md")
    for setting in config.SETTINGS:
        assert setting.key in example, f"{setting.key} missing from vmpooler.yaml.example"
        assert f"`{setting.key}`" in docs, f"{setting.key} missing from docs/configuration.md"


def test_every_provider_key_is_documented_with_its_provider():
    example, docs = _text("vmpooler.yaml.example"), _text("docs", "configuration.md")
    for name in REGISTRY.names():
        schema = REGISTRY.schema(name)
        section = docs.split(f"\n### {name}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        for setting in (*schema.GLOBAL_SETTINGS, *schema.POOL_SETTINGS):
            assert f"| `{setting.key}` |" in section, f"{name}'s {setting.key} missing from its docs section"
        for setting in schema.GLOBAL_SETTINGS:
            assert f"# {setting.key}:" in example, f"{name}'s {setting.key} missing from vmpooler.yaml.example"
            assert f"| `{setting.key}` |" not in docs.split("\n## `:pools:`", 1)[0], \
                f"{setting.key} is {name}'s, not in the core :config: table"


def test_pool_defaults_live_only_in_the_settings_table():
    import dataclasses
    from vmpooler.model import PoolConfig
    fields = {field.name: field for field in dataclasses.fields(PoolConfig)}
    for name in ("timeout", "ready_ttl", "check_hostname_for_mismatch"):
        assert fields[name].default is dataclasses.MISSING, f"PoolConfig.{name} has a default of its own"
    loaded = build({":config:": {"timeout": 7, "ready_ttl": 9, "check_ready_vm_hostname_for_mismatch": False},
                    ":pools:": [{"name": "a", "template": "t", "size": 1}]}, {})
    pool = loaded.pools[0]
    assert (pool.timeout, pool.ready_ttl, pool.check_hostname_for_mismatch) == (7, 9, False)


def test_vsphere_pool_keys_on_a_dummy_pool_are_warned_about():
    loaded = build({":pools:": [{"name": "a", "template": "t", "size": 1, "datastore": "ds"}]}, {})
    assert loaded.warnings == ["pools[a].datastore is not a known key; ignored"]


def test_a_misspelt_key_is_told_the_key_it_may_mean():
    assert unknown_key("config", "vm_lifetme", SETTINGS_BY_KEY) == (
        "config.vm_lifetme is not a known key; ignored (did you mean vm_lifetime?)")
    assert unknown_key("pools[a]", "colour", ["template", "size"]) == "pools[a].colour is not a known key; ignored"
    assert did_you_mean("clone_targt", ["clone_target", "template"]) == " (did you mean clone_target?)"


def test_an_unknown_provider_class_is_one_problem_not_two():
    raw = {"providers": {"mine": {"provider_class": "vshpere"}},
           "pools": [{"name": "a", "template": "t", "size": 1, "provider": "mine", "folder": "f"}]}
    with pytest.raises(ConfigError) as error:
        config.build(raw, {}, REGISTRY)
    assert len(error.value.problems) == 1, error.value.problems
    assert error.value.problems[0].startswith("providers.mine: unknown provider 'vshpere' (did you mean vsphere?)")
    assert error.value.warnings == []  # its pool's keys are not called unknown either


def test_the_built_in_pools_are_the_example_file_s():
    example = config.build(config.read_file(os.path.join(ROOT, "vmpooler.yaml.example")), {}, REGISTRY)
    built_in = config.build(config.default_raw(), {}, REGISTRY)
    shown = [(p.name, p.template, p.size, p.provider, p.alias) for p in built_in.pools]
    assert shown == [(p.name, p.template, p.size, p.provider, p.alias) for p in example.pools]
    assert built_in.aliases == {"debian-7-32": ["debian-7-i386"]}

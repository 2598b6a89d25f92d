"""Providers are plugins: found through the entry-point group ``vmpooler.providers`` (ours too),
their sections checked by the schema they declare, their backend imported only when built."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from vmpooler import config as config_module
from vmpooler.plugins import PROVIDERS_GROUP, discover
from vmpooler.providers.registry import Registry

PLUGIN_CONFIG = '''
from vmpooler.providers.base import ProviderSchema
from vmpooler.settings import Setting, read_settings

OPTIONS = (Setting("endpoint", "str", None, "Where the fake cloud answers."),)
POOL_SETTINGS = (Setting("flavor", "str", "small", "Size of the VMs."),)


class FakeSchema(ProviderSchema):
    PROVIDER_KEYS = frozenset({"provider_class", "endpoint"})
    POOL_SETTINGS = POOL_SETTINGS

    def provider_options(self, section, values, settings, problems):
        found = read_settings(OPTIONS, section, problems)
        if not found["endpoint"]:
            problems.append("endpoint: required")
        return found["endpoint"]

    def pool_options(self, pool, options, problems):
        return read_settings(POOL_SETTINGS, pool, problems)["flavor"]


SCHEMA = FakeSchema()
'''
PLUGIN_PROVIDER = '''
import fake_backend  # the plugin's "backend library": importing this module proves it was loaded

from vmpooler.model import VMInfo
from vmpooler.providers.base import Provider


class FakeCloudProvider(Provider):
    def __init__(self, name, options):
        super().__init__(name, options)
        self.vms = {}

    def list_vms(self, pool):
        return [VMInfo(name=name) for name, owner in self.vms.items() if owner == pool.name]

    def create_vm(self, pool, name):
        self.vms[name] = pool.name
        return VMInfo(name=name)

    def is_ready(self, pool, name):
        return name in self.vms

    def get_vm(self, pool, name):
        return VMInfo(name=name) if name in self.vms else None

    def destroy_vm(self, pool, name):
        self.vms.pop(name, None)

    def create_snapshot(self, pool, name, snapshot):
        pass

    def revert_snapshot(self, pool, name, snapshot):
        pass

    def create_disk(self, pool, name, size_gb):
        pass
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder holding an installed-looking distribution ``vmpooler-provider-fake`` whose entry
    point registers provider class ``fake``, put on sys.path."""
    package = tmp_path / "vmpooler_provider_fake"
    package.mkdir()
    (package / "__init__.py").write_text('"""A fake cloud."""\n')
    (package / "config.py").write_text(PLUGIN_CONFIG)
    (package / "provider.py").write_text(PLUGIN_PROVIDER)
    (tmp_path / "fake_backend.py").write_text("LOADED = True\n")
    info = tmp_path / "vmpooler_provider_fake-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vmpooler-provider-fake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{PROVIDERS_GROUP}]\nfake = vmpooler_provider_fake\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [name for name in sys.modules if name.startswith(("vmpooler_provider_fake", "fake_backend"))]:
        del sys.modules[module]


def test_ours_register_through_the_entry_point_group():
    found = discover(PROVIDERS_GROUP)
    assert {name: found.get(name) for name in ("dummy", "vsphere", "libvirt")} == {
        "dummy": "vmpooler.providers.dummy", "vsphere": "vmpooler.providers.vsphere",
        "libvirt": "vmpooler.providers.libvirt"}


def test_a_plugin_is_found_validated_and_built(plugin_path):
    registry = Registry.discover()
    assert "fake" in registry.names() and "libvirt" in registry.names()
    with pytest.raises(config_module.ConfigError) as raised:
        config_module.build({":providers:": {"cloud": {"provider_class": "fake"}},
                             ":pools:": [{"name": "p", "template": "t", "size": 1}]}, {}, registry)
    assert "providers.cloud.endpoint: required" in raised.value.problems
    loaded = config_module.build({":providers:": {"cloud": {"provider_class": "fake", "endpoint": "https://x"}},
                                  ":pools:": [{"name": "p", "template": "t", "size": 1, "flavor": "large"}]},
                                 {}, registry)
    assert "fake_backend" not in sys.modules  # checking the file imported no backend
    assert loaded.pools[0].provider_options == "large"
    provider = registry.build(loaded)["cloud"]
    assert type(provider).__name__ == "FakeCloudProvider" and provider.options == "https://x"
    provider.create_vm(loaded.pools[0], "vm1")
    assert [info.name for info in provider.list_vms(loaded.pools[0])] == ["vm1"]


def test_check_config_validates_a_plugins_section_without_importing_any_backend(plugin_path, tmp_path):
    config = tmp_path / "vmpooler.yaml"
    config.write_text(textwrap.dedent("""
        :providers:
          :cloud:
            provider_class: 'fake'
            endpont: 'https://typo'
          :kvm:
            provider_class: 'libvirt'
            uri: 'qemu+ssh://kvm1/system'
          :vc:
            provider_class: 'vsphere'
            server: 'vc'
            username: 'u'
            password: 'p'
        :pools:
          - {name: 'p', template: 't', size: 1, provider: 'cloud'}
          - {name: 'k', template: 't', size: 1, provider: 'kvm', storage_pool: 'default'}
          - {name: 'v', template: 't', size: 1, provider: 'vc', folder: 'f', datastore: 'd'}
        """))
    # check-config, then report which backend libraries the process had imported
    script = ("import sys\nfrom vmpooler.cli import main\ntry:\n    main(['check-config', sys.argv[1]])\n"
              "except SystemExit:\n    pass\n"
              "print('imported:', sorted(m for m in ('fake_backend', 'libvirt', 'pyVmomi') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.getcwd()])}

    def check() -> str:
        return subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True, text=True, env=env,
                              timeout=60).stdout

    output = check()
    assert "providers.cloud.endpoint: required" in output and "imported: []" in output, output
    config.write_text(config.read_text().replace("endpont: 'https://typo'", "endpont: 'x'\n    endpoint: 'x'"))
    output = check()
    assert ": OK (3 pools, 3 providers" in output and "providers.cloud.endpont" in output and "imported: []" in output, output

"""A 3.x configuration's keys are understood, not ignored: the queue-reliability keys (see
tests/manager/test_dead_letters.py for what they do), per-provider circuit breakers, purging of
unconfigured resources, and the keys that ask for what this service never does."""
import pathlib
import textwrap

import pytest

from tests.conftest import make_config
from tests.test_cli import vmpooler
from vmpooler.manager.runner import ProviderRunner
from vmpooler.providers.registry import REGISTRY

THREE_X = textwrap.dedent("""\
    :providers:
      :dummy:
        circuit_breaker_failure_threshold: 2
        circuit_breaker_timeout: 90
        skip_dns_check_before_creating_vm: true
      :vsphere:
        server: 'vc.example.com'
        username: 'u'
        password: 'p'
        purge_unconfigured_resources: true
        resources_allowlist: ['keep-me']
    :pools:
      - name: 'debian'
        template: 'debian'
        size: 1
        timeout_notification: 2
    :config:
      max_vm_retries: 4
      timeout_notification: 5
      purge_unconfigured_resources: true
      dlq_enabled: true
      dlq_ttl: 168
      dlq_max_entries: 10000
      purge_enabled: true
      purge_interval: 3600
      purge_dry_run: true
      max_pending_age: 7200
      max_ready_age: 86400
      max_completed_age: 3600
      max_orphaned_age: 86400
      health_check_enabled: true
      health_check_interval: 300
      health_thresholds:
        pending_queue_max: 100
        stuck_vm_max_critical: 50
      circuit_breaker_enabled: true
      circuit_breaker_failure_threshold: 5
      circuit_breaker_timeout: 30
      circuit_breaker_half_open_attempts: 3
    """)


def test_the_3x_queue_and_provider_keys_load_without_a_warning(tmp_path):
    path = tmp_path / "vmpooler.yaml"
    path.write_text(THREE_X)
    checked = vmpooler("check-config", "--strict", str(path))
    assert checked.returncode == 0 and "warning" not in checked.stdout, checked.stdout


def test_the_keys_mean_what_they_meant():
    config = make_config(providers={"dummy": {"circuit_breaker_failure_threshold": 2, "circuit_breaker_timeout": 90},
                                    "other": {"provider_class": "dummy"}},
        settings={"max_vm_retries": 4, "timeout_notification": 5, "circuit_breaker_failure_threshold": 5},
        pools=[{"name": "debian", "template": "debian", "size": 1, "timeout_notification": 2},
               {"name": "centos", "template": "centos", "size": 1, "provider": "other"}])
    pools = {pool.name: pool for pool in config.pools}
    assert pools["debian"].timeout_notification == 2 and pools["centos"].timeout_notification == 5
    runner = ProviderRunner(REGISTRY.build(config), config.settings,
                            breaker_settings={name: entry.breaker for name, entry in config.providers.items()})
    try:
        assert (runner.breakers["dummy"].threshold, runner.breakers["dummy"].timeout) == (2, 90)
        assert (runner.breakers["other"].threshold, runner.breakers["other"].timeout) == (5, 30)
    finally:
        runner.executor.shutdown()


def test_a_global_purge_turns_it_on_for_every_provider_and_the_allowlist_is_honoured():
    vsphere = {"vsphere": {"server": "vc", "username": "u", "password": "p", "resources_allowlist": ["keep"],
                           "folder_whitelist": ["old"]}}
    pools = [{"name": "debian", "template": "debian", "size": 1, "provider": "vsphere", "folder": "vmpooler/debian",
              "datastore": "ds"}]
    off = make_config(pools=pools, providers=vsphere).providers["vsphere"].options
    on = make_config(pools=pools, providers=vsphere,
                     settings={"purge_unconfigured_resources": True}).providers["vsphere"].options
    assert (off.purge_unconfigured, on.purge_unconfigured) == (False, True)
    assert set(on.folder_whitelist) == {"keep", "old"}


def test_a_bad_provider_breaker_key_names_the_key(tmp_path):
    path = tmp_path / "vmpooler.yaml"
    path.write_text(":providers:\n  :dummy:\n    circuit_breaker_timeout: soon\n:pools:\n"
                    "  - name: a\n    template: a\n    size: 1\n")
    checked = vmpooler("check-config", str(path))
    assert checked.returncode == 1 and "providers.dummy.circuit_breaker_timeout" in checked.stdout


@pytest.mark.parametrize("version", ["3.9.1", "2.5.0"])
def test_the_original_s_example_configurations_check_without_a_warning(version):
    """The original's own example files (their live keys): what has no use here is a note, not a
    warning, so --strict passes."""
    path = pathlib.Path(__file__).parent / "originals" / f"vmpooler-{version}.yaml"
    checked = vmpooler("check-config", "--strict", str(path))
    assert checked.returncode == 0, checked.stdout
    assert "warning" not in checked.stdout
    assert "note: :redis: is not used here: the database replaces redis" in checked.stdout

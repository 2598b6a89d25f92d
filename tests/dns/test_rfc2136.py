"""The rfc2136 DNS plugin against a real BIND 9 on loopback: records added, replaced and removed
with TSIG-signed updates, and every kind of failure typed as the manager's retry policy needs."""
import base64

import pytest

from tests.conftest import make_config
from tests.dns.bind import LOCKED_ZONE, ZONE
from tests.servers import free_port
from vmpooler.dns.base import DnsError, PermanentDnsError
from vmpooler.dns.registry import REGISTRY


def plugin_for(named, **overrides):
    """The plugin the service would build from a :dns_configs: entry ``lab`` for ``named``."""
    config = make_config(pools=[{"name": "a", "template": "t", "size": 0, "dns_plugin": "lab"}],
                         dns_configs={"lab": named.section(**overrides)})
    return REGISTRY.build(config)["lab"]


def test_adds_replaces_and_removes_a_record(named):
    plugin = plugin_for(named)
    plugin.create_or_replace_record("vm-one", "192.0.2.10")
    assert named.query(f"vm-one.{ZONE}") == ["192.0.2.10"]
    assert named.ttl(f"vm-one.{ZONE}") == 120
    plugin.create_or_replace_record("vm-one", "192.0.2.10")  # again: still one record
    plugin.create_or_replace_record("vm-one", "192.0.2.11")  # a new address replaces the old one
    assert named.query(f"vm-one.{ZONE}") == ["192.0.2.11"]
    plugin.create_or_replace_record("vm-two", "192.0.2.12")
    plugin.delete_record("vm-one")
    assert named.query(f"vm-one.{ZONE}") == [] and named.query(f"vm-two.{ZONE}") == ["192.0.2.12"]
    plugin.delete_record("vm-one")  # a name without records is no error
    plugin.delete_record("vm-two")
    assert named.query(f"vm-two.{ZONE}") == []


def test_an_ipv6_address_is_an_aaaa_record_replacing_the_a_record(named):
    plugin = plugin_for(named)
    plugin.create_or_replace_record("vm-six", "192.0.2.20")
    plugin.create_or_replace_record("vm-six", "2001:db8::20")
    assert named.query(f"vm-six.{ZONE}", "AAAA") == ["2001:db8::20"] and named.query(f"vm-six.{ZONE}") == []
    plugin.delete_record("vm-six")
    assert named.query(f"vm-six.{ZONE}", "AAAA") == []


def test_a_domain_below_the_zone(named):
    plugin = plugin_for(named, domain=f"lab.{ZONE}", zone=ZONE)
    plugin.create_or_replace_record("vm-deep", "192.0.2.30")
    assert named.query(f"vm-deep.lab.{ZONE}") == ["192.0.2.30"]
    plugin.delete_record("vm-deep")
    assert named.query(f"vm-deep.lab.{ZONE}") == []


@pytest.mark.parametrize("overrides, needle", [
    ({"tsig_secret": base64.b64encode(b"not the key's secret, not at all").decode()}, "TSIG"),
    ({"tsig_key_name": "nobody-knows-this-key"}, "TSIG"),
    ({"domain": LOCKED_ZONE}, "REFUSED"),
    ({"tsig_key_name": None, "tsig_secret": None}, "REFUSED"),
])
def test_updates_the_server_refuses_are_permanent_and_change_nothing(named, overrides, needle):
    plugin = plugin_for(named, **overrides)
    domain = overrides.get("domain", ZONE)
    with pytest.raises(PermanentDnsError, match=needle) as raised:
        plugin.create_or_replace_record("vm-refused", "192.0.2.40")
    assert named.secret not in str(raised.value)
    assert named.query(f"vm-refused.{domain}") == []


def test_a_server_that_does_not_answer_is_a_transient_failure(named):
    plugin = plugin_for(named, port=free_port(), timeout=0.5)  # nothing listens there
    with pytest.raises(DnsError) as raised:
        plugin.create_or_replace_record("vm-nowhere", "192.0.2.50")
    assert raised.value.transient and not isinstance(raised.value, PermanentDnsError)
    unresolvable = plugin_for(named, server="no-such-host.invalid")
    with pytest.raises(DnsError, match="cannot resolve") as raised:
        unresolvable.delete_record("vm-nowhere")
    assert raised.value.transient

""":dns_configs: and the pool key dns_plugin: the pool's domain, the errors naming their key, each
plugin's own keys checked by its schema, and plugins found through the vmpooler.dns entry points
(so a plugin shipped as its own package is found like ours)."""
import functools
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import make_config
from vmpooler.config import ConfigError
from vmpooler.dns import registry as dns_registry
from vmpooler.plugins import DNS_GROUP, discover

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RFC2136 = {"dns_class": "rfc2136", "domain": "lab.example.com", "server": "192.0.2.1", "tsig_key_name": "k",
           "tsig_secret": "c2VjcmV0LXNlY3JldC1zZWNyZXQ="}


def pools(*dns_plugins):
    return [{"name": f"p{i}", "template": "t", "size": 1, **({"dns_plugin": d} if d else {})}
            for i, d in enumerate(dns_plugins)]


def problems_of(**sections):
    with pytest.raises(ConfigError) as raised:
        make_config(**sections)
    return raised.value.problems


def test_a_pools_domain_comes_from_its_dns_setup_else_the_default():
    config = make_config(pools=pools("example", "lab", None), settings={"domain": "default.test"},
                         dns_configs={":example:": {"dns_class": "dynamic-dns", "domain": "example.com"},
                                      "lab": RFC2136})
    assert [(p.dns_plugin, p.domain) for p in config.pools] == [
        ("example", "example.com"), ("lab", "lab.example.com"), (None, "default.test")]
    assert config.domain_of("p0") == "example.com" and config.domain_of("removed-pool") == "default.test"
    assert config.domains == {"example.com", "lab.example.com", "default.test"}
    assert config.warnings == []
    assert config.dns["lab"].options.zone == "lab.example.com" and config.dns["lab"].options.port == 53
    assert "c2VjcmV0" not in repr(config.dns["lab"].options)  # the secret stays out of reprs (and logs)
    bare = make_config(pools=pools(None))
    assert bare.pools[0].domain is None and bare.domains == set()


def test_dns_class_defaults_to_the_entry_name_as_in_the_original():
    config = make_config(pools=pools("dynamic-dns"), dns_configs={"dynamic-dns": {"domain": "example.com"}})
    assert config.dns["dynamic-dns"].dns_class == "dynamic-dns" and config.pools[0].domain == "example.com"


def test_unknown_dns_class_and_unknown_dns_plugin_are_errors_naming_the_key():
    problems = problems_of(pools=pools("nope", "cloud"), dns_configs={"cloud": {"dns_class": "gcp",
                                                                              "domain": "example.com"}})
    assert any(p.startswith("dns_configs.cloud.dns_class: unknown DNS plugin 'gcp' (known: dynamic-dns, rfc2136")
               for p in problems), problems
    assert any(p.startswith("pools[p0].dns_plugin: 'nope' is not configured under :dns_configs:")
               for p in problems), problems
    assert not any(p.startswith("pools[p1]") for p in problems), "the entry's own error is enough"


@pytest.mark.parametrize("entry, needle", [
    ({"dns_class": "dynamic-dns"}, "dns_configs.x.domain: required"),
    ({"dns_class": "dynamic-dns", "domain": "not a domain"}, "dns_configs.x.domain: required"),
    ({**RFC2136, "server": None}, "dns_configs.x.server: required"),
    ({**RFC2136, "zone": "other.com"}, "dns_configs.x.zone: the domain 'lab.example.com' is not in the zone"),
    ({**RFC2136, "tsig_secret": "not base64!"}, "dns_configs.x.tsig_secret: must be base64"),
    ({**RFC2136, "tsig_secret": None}, "dns_configs.x.tsig_secret: required with tsig_key_name"),
    ({**RFC2136, "tsig_algorithm": "rot13"}, "dns_configs.x.tsig_algorithm: must be one of hmac-sha256"),
    ({**RFC2136, "port": "fifty-three"}, "dns_configs.x.port: must be an integer"),
    ({**RFC2136, "ttl": -1}, "dns_configs.x.ttl: must be at least 0"),
])
def test_each_plugin_checks_its_own_keys(entry, needle):
    problems = problems_of(pools=pools("x"), dns_configs={"x": entry})
    assert any(p.startswith(needle) for p in problems), problems
    assert "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" not in "\n".join(problems)


def test_unknown_keys_of_an_entry_are_warned_about():
    config = make_config(pools=pools("x"), dns_configs={"x": {"dns_class": "dynamic-dns", "domain": "example.com",
                                                              "project": "p", "domian": "x"}})
    assert config.warnings == ["dns_configs.x.project is not a known key; ignored",
                               "dns_configs.x.domian is not a known key; ignored (did you mean domain?)"]


def test_a_misspelt_class_or_setup_name_is_told_what_was_meant():
    problems = problems_of(pools=pools("exmaple"), dns_configs={"example": {"dns_class": "rfc2163",
                                                                            "domain": "example.com"}})
    assert any(p.startswith("dns_configs.example.dns_class: unknown DNS plugin 'rfc2163' (did you mean rfc2136?)")
               for p in problems), problems
    assert any(p.startswith("pools[p0].dns_plugin: 'exmaple' is not configured under :dns_configs: "
                            "(did you mean example?)") for p in problems), problems


def test_check_config_validates_a_plugins_section(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        :dns_configs:
          :lab:
            dns_class: rfc2136
            domain: lab.example.com
            tsig_key_name: k
            tsig_secret: '%%%'
        :pools:
          - name: a
            template: t
            size: 1
            dns_plugin: lab
        """))
    result = subprocess.run([sys.executable, "-m", "vmpooler", "check-config", str(bad)], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert "dns_configs.lab.server: required" in result.stdout
    assert "dns_configs.lab.tsig_secret: must be base64" in result.stdout


def test_ours_are_registered_through_the_entry_points():
    assert {"dynamic-dns": "vmpooler.dns.dynamic", "rfc2136": "vmpooler.dns.rfc2136"}.items() <= \
        discover(DNS_GROUP).items()


def test_a_plugin_shipped_as_its_own_package_is_found_and_used(tmp_path, monkeypatch):
    """A distribution registering ``vmpooler.dns: fake = vmpooler_dns_fake`` (as a Cloud DNS
    plugin would) is found, its schema checks its entry, and the service builds its plugin."""
    package = tmp_path / "vmpooler_dns_fake"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text(textwrap.dedent("""\
        from vmpooler.dns.base import DnsSchema
        from vmpooler.settings import Setting, read_settings

        class FakeSchema(DnsSchema):
            SETTINGS = (Setting("project", "str", None, "Cloud project."),)

            def options(self, section, domain, problems):
                project = read_settings(self.SETTINGS, section, problems)["project"]
                if not project:
                    problems.append("project: required")
                return project

        SCHEMA = FakeSchema()
        """))
    (package / "plugin.py").write_text(textwrap.dedent("""\
        from vmpooler.dns.base import DnsPlugin

        class FakePlugin(DnsPlugin):
            def create_or_replace_record(self, hostname, ip):
                pass

            def delete_record(self, hostname):
                pass

        PLUGIN = FakePlugin
        """))
    info = tmp_path / "vmpooler_dns_fake-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vmpooler-dns-fake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vmpooler.dns]\nfake = vmpooler_dns_fake\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = dns_registry.DnsRegistry(functools.partial(dns_registry._packages, DNS_GROUP))
    monkeypatch.setattr(dns_registry, "REGISTRY", registry)
    import vmpooler.config
    monkeypatch.setattr(vmpooler.config, "DNS_REGISTRY", registry)
    assert "fake" in registry.names()
    config = make_config(pools=pools("cloud"), dns_configs={"cloud": {"dns_class": "fake", "domain": "example.com",
                                                                      "project": "p1"}})
    assert config.dns["cloud"].options == "p1" and config.warnings == []
    plugin = registry.build(config)["cloud"]
    assert type(plugin).__name__ == "FakePlugin" and plugin.registers and plugin.config.domain == "example.com"
    assert problems_of(pools=pools("cloud"), dns_configs={"cloud": {"dns_class": "fake", "domain": "example.com"}}) \
        == ["dns_configs.cloud.project: required"]


def test_every_dns_plugin_key_is_documented_with_its_plugin():
    with open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8") as handle:
        docs = handle.read().split("\n## `:dns_configs:`", 1)[1].split("\n## ", 1)[0]
    with open(os.path.join(ROOT, "vmpooler.yaml.example"), encoding="utf-8") as handle:
        example = handle.read()
    for name in dns_registry.REGISTRY.names():
        section = docs.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        for setting in dns_registry.REGISTRY.schema(name).SETTINGS:
            assert f"| `{setting.key}` |" in section, f"{name}'s {setting.key} missing from its docs section"
            assert f"# {setting.key}:" in example or f"#     {setting.key}:" in example, \
                f"{name}'s {setting.key} missing from vmpooler.yaml.example"


def test_check_config_of_an_rfc2136_file_does_not_import_dnspython(tmp_path):
    """The loader reads a plugin's config.py only: checking a file needs none of the plugins' libraries."""
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent("""\
        :dns_configs:
          lab: {dns_class: rfc2136, domain: lab.example.com, server: 192.0.2.1, tsig_key_name: k,
                tsig_secret: c2VjcmV0}
        :pools:
          - {name: a, template: t, size: 1, dns_plugin: lab}
        """))
    program = ("import sys\nfrom vmpooler.cli import main\ncode = main(['check-config', sys.argv[1]])\n"
               "print('dnspython imported' if any(m == 'dns' or m.startswith('dns.') for m in sys.modules) "
               "else 'dnspython not imported')\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", program, str(good)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "dnspython not imported" in result.stdout


"""The :auth: / :ldap: section: the original's spellings are read, every problem names its key,
and a bad section stops start-up."""
import pytest
import yaml

from tests.conftest import make_config
from tests.test_cli import vmpooler
from vmpooler.auth import build_auth_store
from vmpooler.auth.ldap import LdapStore
from vmpooler.auth_config import LdapConfig, TlsOptions
from vmpooler import config as config_module
from vmpooler.config import ConfigError
from vmpooler.providers.registry import REGISTRY

ORIGINAL_EXAMPLE = """
:auth:
  provider: 'ldap'
  :ldap:
    host: 'ldap.example.com'
    port: 636
    service_account_hash:
      :user_dn: 'cn=Service Account,ou=Accounts,dc=ldap,dc=example,dc=com'
      :password: 'service-account-password'
    encryption:
      :method: :simple_tls
      :tls_options:
        :ssl_version: 'TLSv1_2'
    base:
      - 'ou=Accounts,dc=company,dc=com'
    user_object:
      - 'samAccountName'
"""


def ldap_config(auth, environ=None):
    raw = {"pools": [{"name": "p", "template": "t", "size": 1}], "auth": auth}
    return config_module.build(raw, environ or {}, REGISTRY).auth


def test_the_original_example_with_ruby_symbols():
    auth = ldap_config(yaml.safe_load(ORIGINAL_EXAMPLE)[":auth"])
    assert auth["ldap"] == LdapConfig(
        host="ldap.example.com", port=636, bases=("ou=Accounts,dc=company,dc=com",), user_objects=("samAccountName",),
        encryption="simple_tls", tls=TlsOptions(ssl_version="TLSv1_2"),
        service_dn="cn=Service Account,ou=Accounts,dc=ldap,dc=example,dc=com",
        service_password="service-account-password")
    assert "service-account-password" not in repr(auth["ldap"])


def test_defaults_strings_split_and_the_environment():
    auth = ldap_config({"provider": "ldap", "ldap": {"host": "ldap1", "base": "ou=a,dc=x ou=b,dc=x",
                                                     "user_object": "uid cn"}})
    ldap = auth["ldap"]
    assert (ldap.port, ldap.encryption, ldap.tls.verify) == (389, "start_tls", True)  # start_tls as the original
    assert ldap.bases == ("ou=a,dc=x", "ou=b,dc=x") and ldap.user_objects == ("uid", "cn")
    environ = {"AUTH_PROVIDER": "ldap", "LDAP_HOST": "ldap2", "LDAP_PORT": "1389", "LDAP_BASE": "dc=y",
               "LDAP_USER_OBJECT": "mail"}
    ldap = ldap_config(None, environ)["ldap"]
    assert (ldap.host, ldap.port, ldap.bases, ldap.user_objects) == ("ldap2", 1389, ("dc=y",), ("mail",))
    assert isinstance(build_auth_store(make_config(auth={"provider": "ldap", "ldap": {
        "host": "h", "base": "dc=x", "user_object": "uid"}})), LdapStore)


@pytest.mark.parametrize("section, named", [
    ({}, ["auth.ldap.host", "auth.ldap.base", "auth.ldap.user_object"]),
    ({"host": "ldap://h", "base": "dc=x", "user_object": "uid"}, ["auth.ldap.host"]),
    ({"host": "h", "port": "x", "base": [], "user_object": [1]},
     ["auth.ldap.port", "auth.ldap.base", "auth.ldap.user_object"]),
    ({"host": "h", "port": 70000, "base": "dc=x", "user_object": "uid"}, ["auth.ldap.port"]),
    ({"host": "h", "base": "dc=x", "user_object": "uid", "hots": "h"}, ["auth.ldap.hots"]),
    ({"host": "h", "base": "dc=x", "user_object": "uid", "encryption": {":method": ":tls"}},
     ["auth.ldap.encryption.method"]),
    ({"host": "h", "base": "dc=x", "user_object": "uid", "encryption": {"tls_options": {
        "ssl_version": "SSLv3", "verify_mode": "maybe", "ca_fil": "x"}}},
     ["auth.ldap.encryption.tls_options.ssl_version", "auth.ldap.encryption.tls_options.verify_mode",
      "auth.ldap.encryption.tls_options.ca_fil"]),
    ({"host": "h", "base": "dc=x", "user_object": "uid", "encryption": {"tls_options": {
        "ca_file": "/nonexistent/ca.pem", "ca_path": "/nonexistent", "key_file": "/etc/hostname",
        "ciphers": "NO-SUCH-CIPHER"}}},
     ["auth.ldap.encryption.tls_options.ca_file", "auth.ldap.encryption.tls_options.ca_path",
      "auth.ldap.encryption.tls_options.key_file", "auth.ldap.encryption.tls_options.ciphers"]),
    ({"host": "h", "base": "dc=x", "user_object": "uid", "service_account_hash": {"user_dn": "cn=s"}},
     ["auth.ldap.service_account_hash.password"]),
    ({"host": "h", "base": "dc=x", "user_object": "uid", "receive_timeout": 0}, ["auth.ldap.receive_timeout"]),
    ("ldap.example.com", ["auth.ldap"]),
])
def test_problems_name_their_key(section, named):
    with pytest.raises(ConfigError) as raised:
        ldap_config({"provider": "ldap", ":ldap": section})
    for key in named:
        assert any(problem.startswith(key + ":") or problem.startswith(key + " ") for problem in
                   raised.value.problems), (key, raised.value.problems)
    assert len(raised.value.problems) == len(named), raised.value.problems


def test_a_bad_section_stops_start_up_and_check_config_lists_it(tmp_path):
    path = tmp_path / "vmpooler.yaml"
    path.write_text(yaml.safe_dump({"pools": [{"name": "p", "template": "t", "size": 1}],
                                    ":auth": {"provider": "ldap", ":ldap": {"host": "h", "base": "dc=x"}}}))
    checked = vmpooler("check-config", str(path))
    assert checked.returncode == 1 and "auth.ldap.user_object" in checked.stdout
    served = vmpooler("serve", "--config", str(path), "--port", "0", cwd=tmp_path)
    assert served.returncode == 2 and "auth.ldap.user_object" in served.stderr
    assert "Traceback" not in served.stderr and not (tmp_path / "vmpooler.db").exists()

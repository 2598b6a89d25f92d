"""GET /api/v3/full_config: the whole configuration in 3.x's shape, with no secret in it (3.x sends
every password)."""
import json
import time
import types

from tests.conftest import make_config
from vmpooler.api.fullconfig import REDACTED, full_config, redacted
from vmpooler.auth import hash_password

SECRETS = ["pw-of-the-directory", "pw-of-the-database", "pw-of-the-provider", "token-of-the-provider",
           "key-of-the-provider", "pw-in-a-url", "dHNpZy1vZi10aGUtZG5z"]


def test_no_known_secret_appears(start_api):
    digest = hash_password("user-password", rounds=4)
    api = start_api(settings={"domain": "company.com"},
                    auth={"provider": "users", "users": {"jdoe": digest}},
                    database={"url": "postgresql://vmpooler:pw-of-the-database@db.example/vmpooler"},
                    providers={"dummy": {"password": "pw-of-the-provider", "api_token": "token-of-the-provider",
                                         "access_key": "key-of-the-provider",
                                         "server": "https://admin:pw-in-a-url@vcenter.example/sdk"}},
                    dns_configs={"lab": {"dns_class": "rfc2136", "domain": "lab.example.com", "server": "192.0.2.1",
                                         "tsig_key_name": "vmpooler", "tsig_secret": "dHNpZy1vZi10aGUtZG5z"}})
    response = api.get("/api/v3/full_config")
    assert response.status == 200
    text = response.text
    for secret in SECRETS[1:] + [digest, digest[:20]]:
        assert secret not in text, secret
    body = response.json()["full_config"]
    assert body["auth"]["users"] == {"jdoe": REDACTED}
    assert body["providers"]["dummy"]["password"] == REDACTED
    assert body["providers"]["dummy"]["server"] == f"https://admin:{REDACTED}@vcenter.example/sdk"
    assert body["database"]["url"] == f"postgresql://vmpooler:{REDACTED}@db.example/vmpooler"
    assert body["dns_configs"]["lab"]["tsig_secret"] == REDACTED and body["dns_configs"]["lab"]["tsig_key_name"] == "vmpooler"
    assert body["rate_limits"]["vm_creation"] == {"limit": 20, "period": 60}
    # what is not secret is shown as configured
    assert body["config"]["auth_token_failures_per_minute"] == 600 and body["config"]["domain"] == "company.com"


def test_ldap_service_account_password_is_redacted():
    config = make_config(auth={"provider": "ldap", "ldap": {
        "host": "ldap.example", "base": "ou=people,dc=example", "user_object": "uid",
        "service_account_hash": {"user_dn": "cn=svc,dc=example", "password": "pw-of-the-directory"}}})
    body = full_config(types.SimpleNamespace(config=config, started_at=time.time()))
    text = json.dumps(body)
    assert "pw-of-the-directory" not in text and "cn=svc,dc=example" in text


def test_redaction_rules():
    assert redacted({"password": 12345, "key_file": "/etc/x.pem", "tls": {"private_key": "k"},
                     "vm_checktime": 1, "secrets": ["a"]}) == {
        "password": REDACTED, "key_file": "/etc/x.pem", "tls": {"private_key": REDACTED}, "vm_checktime": 1,
        "secrets": [REDACTED]}

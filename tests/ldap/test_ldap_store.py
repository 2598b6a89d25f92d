"""The LDAP auth store against a real slapd: binds per base and user_object, the service account,
TLS (StartTLS, LDAPS, certificate checks), hostile user names, and a directory that goes away."""
import concurrent.futures

import pytest

from tests.ldap.conftest import ldap_section
from tests.ldap.slapd import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, STAFF, SUFFIX, TWIN_PASSWORD
from vmpooler.auth import AuthUnavailable
from vmpooler.auth.ldap import LdapStore
from vmpooler.auth_config import parse_ldap

SERVICE = {":user_dn": SERVICE_DN, ":password": SERVICE_PASSWORD}


def store(slapd, **overrides) -> LdapStore:
    problems = []
    config = parse_ldap(ldap_section(slapd, **overrides), {}, problems)
    assert problems == []
    return LdapStore(config)


@pytest.mark.parametrize("service", [None, SERVICE], ids=["direct-bind", "service-account"])
def test_users_of_both_bases_log_in_and_nobody_else(directory, service):
    ldap = store(directory, **({"service_account_hash": service} if service else {}))
    assert ldap.authenticate("alice", "alice-pw")  # under the first base
    assert ldap.authenticate("bob", "bob-pw")  # under the second
    assert ldap.authenticate("carol, jr", "carol-pw")  # a comma in the uid: escaped in the DN and filter
    assert not ldap.authenticate("alice", "bob-pw")  # a wrong password
    assert not ldap.authenticate("nobody", "alice-pw")  # an unknown user
    assert not ldap.authenticate("alice", "")  # slapd here accepts an unauthenticated bind; we do not


@pytest.mark.parametrize("user", ["*", "ali*", ")(uid=*", "uid=alice,ou=people", "alice,ou=people",
                                  "a\x00b", "x" * 5000, " alice", "alice ", "\\", "é"])
@pytest.mark.parametrize("service", [None, SERVICE], ids=["direct-bind", "service-account"])
def test_hostile_user_names_authenticate_nobody(directory, user, service):
    ldap = store(directory, **({"service_account_hash": service} if service else {}))
    assert ldap.authenticate(user, "alice-pw") is False


def test_user_objects_are_tried_in_turn(directory):
    ldap = store(directory, user_object="cn uid", base=f"{PEOPLE} {STAFF}")  # strings split on whitespace
    assert ldap.authenticate("bob", "bob-pw")


def test_a_search_matching_several_entries_authenticates_nobody(directory):
    ldap = store(directory, base=SUFFIX, service_account_hash=SERVICE)
    assert not ldap.authenticate("twin", TWIN_PASSWORD)  # uid=twin under both ous
    assert ldap.authenticate("alice", "alice-pw")


def test_a_service_account_that_cannot_bind_is_unavailable(directory):
    ldap = store(directory, service_account_hash={"user_dn": SERVICE_DN, "password": "wrong"})
    with pytest.raises(AuthUnavailable):
        ldap.authenticate("alice", "alice-pw")


@pytest.mark.parametrize("method", ["start_tls", ":start_tls", "simple_tls"])
def test_tls_with_the_directory_ca(directory, method):
    port = directory.tls_port if method == "simple_tls" else directory.port
    ldap = store(directory, port=port, encryption={":method": method, ":tls_options": {":ca_file": directory.ca_file}})
    assert ldap.authenticate("alice", "alice-pw")
    assert not ldap.authenticate("alice", "wrong")


@pytest.mark.parametrize("host, tls_options", [("127.0.0.1", {}), ("localhost", "ca")],
                         ids=["unknown-ca", "name-mismatch"])
@pytest.mark.parametrize("method", ["start_tls", "simple_tls"])
def test_a_certificate_that_does_not_verify_is_unavailable(directory, host, tls_options, method):
    options = {"ca_file": directory.ca_file} if tls_options == "ca" else tls_options
    port = directory.tls_port if method == "simple_tls" else directory.port
    ldap = store(directory, host=host, port=port, encryption={"method": method, "tls_options": options})
    with pytest.raises(AuthUnavailable):
        ldap.authenticate("alice", "alice-pw")
    unverified = store(directory, host=host, port=port,
                       encryption={"method": method, "tls_options": {"verify_mode": 0}})
    assert unverified.authenticate("alice", "alice-pw")


@pytest.mark.parametrize("service", [None, SERVICE], ids=["direct-bind", "service-account"])
def test_a_stopped_directory_is_unavailable_until_it_is_back(directory, service):
    ldap = store(directory, **({"service_account_hash": service} if service else {}))
    assert ldap.authenticate("alice", "alice-pw")
    directory.stop()
    with pytest.raises(AuthUnavailable):
        ldap.authenticate("alice", "alice-pw")  # nothing cached: no login while it is down
    directory.start()
    assert ldap.authenticate("alice", "alice-pw")
    assert not ldap.authenticate("alice", "wrong")


@pytest.mark.parametrize("method", ["plain", "start_tls", "simple_tls"])
def test_a_paused_directory_fails_within_the_timeouts_and_one_caller_probes(directory, method):
    port = directory.tls_port if method == "simple_tls" else directory.port
    ldap = store(directory, port=port, receive_timeout=1,
                 encryption={"method": method, "tls_options": {"ca_file": directory.ca_file}})
    directory.pause()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        attempts = [pool.submit(ldap.authenticate, "alice", "alice-pw") for _ in range(8)]
        # a hang would fail here (the receive timeout is 1 s); every caller is told, none gets in
        errors = [future.exception(timeout=30) for future in attempts]
    assert all(isinstance(error, AuthUnavailable) for error in errors), errors
    directory.resume()
    assert ldap.authenticate("alice", "alice-pw")

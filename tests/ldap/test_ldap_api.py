"""Tokens through the API with ``:auth: provider: ldap`` against a real slapd: the token belongs to
the LDAP user; bad credentials are 401; a directory stopped or paused mid-run is a JSON 503 while
the rest of the API answers, and logins work again once it is back."""
import concurrent.futures

import pytest

from tests.api.conftest import assert_error
from tests.ldap.conftest import ldap_section
from tests.ldap.slapd import SERVICE_DN, SERVICE_PASSWORD


def start_ldap_api(start_api, slapd, **overrides):
    auth = {"provider": "ldap", ":ldap": ldap_section(slapd, **overrides)}
    return start_api(settings={"auth_failure_limits_enabled": False}, auth=auth)


@pytest.fixture(params=["direct-bind", "service-account"])
def ldap_api(request, start_api, directory):
    service = {"service_account_hash": {"user_dn": SERVICE_DN, "password": SERVICE_PASSWORD}}
    return start_ldap_api(start_api, directory, **(service if request.param == "service-account" else {}))


def test_a_token_belongs_to_the_ldap_user(ldap_api):
    for user, password in (("alice", "alice-pw"), ("bob", "bob-pw")):
        created = ldap_api.post("/api/v1/token", user=user, password=password)
        assert created.status == 200, created.text
        token = created.json()["token"]
        assert ldap_api.get(f"/api/v1/token/{token}").json()[token]["user"] == user
        listed = ldap_api.get("/api/v1/token", user=user, password=password).json()
        assert token[:8] in listed
    # the token works for a checkout, and the VM is the user's
    ldap_api.add()
    checkout = ldap_api.post("/api/v1/vm/debian-7-i386", token=token)
    assert checkout.status == 200, checkout.text


@pytest.mark.parametrize("user, password", [("alice", "bob-pw"), ("nobody", "alice-pw"), ("alice", ""),
                                            ("*", "alice-pw")])
def test_bad_credentials_are_401(ldap_api, user, password):
    assert_error(ldap_api.post("/api/v1/token", user=user, password=password), 401)


def test_a_stopped_directory_is_503_and_logins_return_with_it(ldap_api, directory):
    directory.stop()
    answer = ldap_api.post("/api/v1/token", user="alice", password="alice-pw")
    assert_error(answer, 503)
    assert "directory" in answer.json()["error"]
    assert ldap_api.get("/api/v1/status").status == 200
    directory.start()
    assert ldap_api.post("/api/v1/token", user="alice", password="alice-pw").status == 200


def test_a_paused_directory_is_503_within_the_timeouts_while_the_api_answers(ldap_api, directory):
    directory.pause()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        # each request would fail with a socket timeout if the service hung
        logins = [pool.submit(ldap_api.post, "/api/v1/token", user="alice", password="alice-pw", timeout=20)
                  for _ in range(5)]
        status = pool.submit(ldap_api.get, "/api/v1/status", timeout=5)
        assert status.result().status == 200  # answered while the logins wait on the directory
        for login in logins:
            assert_error(login.result(), 503)
    directory.resume()
    assert ldap_api.post("/api/v1/token", user="alice", password="alice-pw").status == 200


def test_a_directory_that_refuses_the_certificate_check_is_503(start_api, directory):
    api = start_ldap_api(start_api, directory, encryption={"method": "start_tls"})  # the test CA is unknown
    assert_error(api.post("/api/v1/token", user="alice", password="alice-pw"), 503)
    api = start_ldap_api(start_api, directory, encryption={":method": ":start_tls",
                                                           ":tls_options": {":ca_file": directory.ca_file}})
    assert api.post("/api/v1/token", user="alice", password="alice-pw").status == 200

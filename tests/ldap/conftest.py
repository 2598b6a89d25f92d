"""The LDAP tests' directory: one real slapd per module (tests that stop or pause it restore it),
and the API fixtures of tests/api."""
import pytest

from tests.api.conftest import start_api  # noqa: F401  (a fixture used here too)
from tests.ldap.slapd import PEOPLE, STAFF, Slapd


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    directory = Slapd(str(tmp_path_factory.mktemp("slapd")), tls=True)
    directory.start()
    yield directory
    directory.stop()


@pytest.fixture
def directory(slapd):
    """The module's slapd, running again after the test whatever the test did to it."""
    yield slapd
    if slapd.process is None or slapd.process.poll() is not None:
        slapd.start()
    else:
        slapd.resume()


def ldap_section(slapd, **overrides) -> dict:
    """An :ldap: section for the test directory, in plain LDAP unless ``encryption`` says otherwise."""
    section = {"host": "127.0.0.1", "port": slapd.port, "base": [PEOPLE, STAFF], "user_object": "uid",
               "encryption": {"method": "plain"}, "connect_timeout": 2, "receive_timeout": 1}
    section.update(overrides)
    return section

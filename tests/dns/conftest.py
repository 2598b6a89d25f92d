"""One real BIND 9 per test module (tests/dns/bind.py)."""
import pytest

from tests.api.conftest import start_api  # noqa: F401  (a fixture used here too)
from tests.dns.bind import Named


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    server = Named(str(tmp_path_factory.mktemp("named")))
    server.start()
    yield server
    server.stop()

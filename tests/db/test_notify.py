"""LISTEN/NOTIFY between processes sharing PostgreSQL: delivered on commit, and after a reconnect."""
import os
import queue

import pytest
from sqlalchemy import text

from vmpooler.db.database import Database
from vmpooler.db.notify import WAKE, Listener, libpq_url, notify

URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="needs $VMPOOLER_TEST_POSTGRES_URL (scripts/test.sh sets it)")


@pytest.fixture
def listener():
    heard = queue.Queue()
    listening = Listener(URL, [WAKE], lambda channel, payload: heard.put((channel, payload)), poll=0.1).start()
    assert listening.connected.wait(10)
    yield listening, heard
    listening.stop()


def test_a_signal_arrives_when_its_transaction_commits_and_not_before(listener):
    _, heard = listener
    db = Database(URL)
    with db.engine.connect() as conn:
        transaction = conn.begin()
        notify(conn, WAKE, "checkout")
        with pytest.raises(queue.Empty):
            heard.get(timeout=0.3)
        transaction.commit()
    assert heard.get(timeout=5) == (WAKE, "checkout")
    with db.engine.connect() as conn:
        transaction = conn.begin()
        notify(conn, WAKE, "rolled back")
        transaction.rollback()
    with pytest.raises(queue.Empty):
        heard.get(timeout=0.3)
    db.dispose()


def test_the_listener_comes_back_after_its_connection_is_killed(listener):
    listening, heard = listener
    db = Database(URL)
    listening.connected.clear()
    with db.engine.begin() as conn:
        killed = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE query LIKE 'LISTEN%' AND datname = current_database() "
                                   "AND pid <> pg_backend_pid()")).fetchall()
    assert killed
    assert listening.connected.wait(15)
    with db.engine.begin() as conn:
        notify(conn, WAKE, "after")
    assert heard.get(timeout=5) == (WAKE, "after")
    db.dispose()


def test_sqlalchemy_urls_become_libpq_urls():
    assert libpq_url("postgresql+psycopg://u:p@h:5433/d") == "postgresql://u:p@h:5433/d"

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


def test_a_signal_asked_for_while_the_service_stops_is_dropped_quietly():
    """A write just before a stop asks for a change signal; it fires after the executor is shut
    down, and must not become an 'Exception in callback' in the log."""
    import asyncio
    import concurrent.futures

    from vmpooler.db.notify import CHANGED, Sender

    executor = concurrent.futures.ThreadPoolExecutor(1)
    errors = []

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        sender = Sender(None, CHANGED, interval=0.01, executor=executor)
        sender.send()
        executor.shutdown()
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert errors == []

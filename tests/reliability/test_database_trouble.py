"""Database trouble: the file locked by another process for a while. The manager skips its
passes (nothing half-written) and recovers by itself when the lock goes."""
import asyncio
import sqlite3
import threading
import time

from tests.manager.helpers import fast_config, running, states, wait_for
from tests.reliability.invariants import assert_no_name_live_twice


def hold_exclusive_lock(path, seconds, locked):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


def test_manager_survives_a_locked_database(db, tmp_path):
    config = fast_config([{"name": "a", "template": "t", "size": 4}])
    path = str(tmp_path / "vmpooler.db")

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 4)
            name = sorted(dummy.names())[0]
            dummy.remove(name)  # work for the manager while the database is locked
            manager.next_reconcile = 0
            locked = threading.Event()
            holder = threading.Thread(target=hold_exclusive_lock, args=(path, 2.5, locked))
            holder.start()
            locked.wait()
            await asyncio.sleep(2.6)
            holder.join()
            manager.next_reconcile = 0
            await wait_for(lambda: states(db).get("ready") == 4 and states(db).get("gone") == 1, timeout=10)
    asyncio.run(scenario())
    assert_no_name_live_twice(db)

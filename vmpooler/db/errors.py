"""The state layer's own errors (a leaf: db/database.py and db/batch.py both raise them)."""


class StoreUnavailable(Exception):
    """The database cannot serve the request now (locked, full, read-only, gone). Nothing was
    written; the API answers 503 and the manager tries again on its next pass."""


class TransactionConflict(StoreUnavailable):
    """PostgreSQL aborted the transaction for a conflict with a concurrent one (deadlock detected,
    serialization failure): nothing was written, and the database asks for the transaction to be
    run again. The group commit (db/batch.py) does so; only when the retries run out does it reach
    a caller, as the StoreUnavailable it is."""


#: the SQLSTATEs of TransactionConflict: serialization_failure, deadlock_detected
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})


class WouldWait(StoreUnavailable):
    """SQLite only: a write tried on the IOLoop found the file locked by another process and did
    not wait (Database.not_waiting); the group commit runs it again in a thread, which waits up to
    the busy timeout, so that the IOLoop keeps answering reads meanwhile."""

"""The state layer's own errors (a leaf: db/database.py and db/batch.py both raise them)."""


class StoreUnavailable(Exception):
    """The database cannot serve the request now (locked, full, read-only, gone). Nothing was
    written; the API answers 503 and the manager tries again on its next pass."""

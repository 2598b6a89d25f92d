"""What the scale-out tests share: the PostgreSQL database of $VMPOOLER_TEST_POSTGRES_URL, emptied."""
import os

import pytest
from sqlalchemy import text

from vmpooler.db.database import Database
from vmpooler.db.models import metadata

URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")


@pytest.fixture
def database():
    """The database, empty: the server processes migrate it as they start."""
    if not URL:
        pytest.skip("needs $VMPOOLER_TEST_POSTGRES_URL (scripts/test.sh sets it)")
    db = Database(URL)
    with db.engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    yield db
    db.dispose()

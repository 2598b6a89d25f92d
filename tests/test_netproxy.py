"""The delaying proxy the PostgreSQL latency tests and benchmarks stand on."""
import os
import threading

import pytest
from sqlalchemy import create_engine, text

from tests.netproxy import DelayProxy

URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")


@pytest.mark.skipif(not URL, reason="needs $VMPOOLER_TEST_POSTGRES_URL")
def test_queries_pass_through_and_wait_while_paused():
    from sqlalchemy.engine import make_url

    url = make_url(URL)
    proxy = DelayProxy(url.port or 5432, delay=0.001).start()
    engine = create_engine(url.set(host="127.0.0.1", port=proxy.port))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
            proxy.pause()
            answer = {}
            thread = threading.Thread(target=lambda: answer.update(v=conn.execute(text("SELECT 7")).scalar()))
            thread.start()
            thread.join(0.3)
            assert thread.is_alive() and not answer  # held by the proxy
            proxy.resume()
            thread.join(10)
            assert answer == {"v": 7}
    finally:
        engine.dispose()
        proxy.close()

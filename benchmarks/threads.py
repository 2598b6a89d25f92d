"""Running one function in several threads at once and waiting for them all: the shape shared by
the benchmarks' client loops and the tests' racing clients (tests import it from here)."""
from __future__ import annotations

import threading
import time
from typing import Callable


def run_threads(target: Callable[[int], object], count: int, timeout: float) -> None:
    """``target(0)`` ... ``target(count - 1)``, each in a thread of its own, all started before any
    is waited for; returns when all have ended. Raises RuntimeError if any is still running
    ``timeout`` seconds after the start (a stuck client must not pass for a finished one; the
    threads are daemons, so a stuck one does not hold the process at exit)."""
    threads = [threading.Thread(target=target, args=(index,), daemon=True) for index in range(count)]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        raise RuntimeError(f"{stuck} of {count} threads still running {timeout}s after the start")

from tests.conftest import FakeClock
from vmpooler.manager import hostnames
from vmpooler.manager.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


def test_breaker_opens_after_threshold_and_closes_after_trial_successes():
    clock = FakeClock(0.0)
    breaker = CircuitBreaker("p", threshold=3, timeout=10, half_open_successes=2, clock=clock)
    for _ in range(2):
        breaker.failure()
    assert breaker.state == CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state == OPEN and not breaker.allow()
    clock.now = 10
    assert breaker.allow() and breaker.state == HALF_OPEN
    breaker.success()
    assert breaker.state == HALF_OPEN
    breaker.success()
    assert breaker.state == CLOSED


def test_breaker_failure_while_half_open_reopens():
    clock = FakeClock(0.0)
    breaker = CircuitBreaker("p", threshold=1, timeout=5, clock=clock)
    breaker.failure()
    clock.now = 5
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == OPEN and not breaker.allow()


def test_success_while_closed_resets_the_count():
    breaker = CircuitBreaker("p", threshold=2)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == CLOSED


def test_disabled_breaker_always_allows():
    breaker = CircuitBreaker("p", threshold=1, enabled=False)
    breaker.failure()
    assert breaker.allow()


def test_hostnames_are_readable_short_and_prefixed():
    names = [hostnames.generate() for _ in range(500)]
    assert all(len(n) <= 15 and n.count("-") >= 1 for n in names)
    assert len(set(names)) > 450
    assert hostnames.generate("ci-").startswith("ci-")


def test_a_late_success_of_a_call_from_before_the_opening_does_not_reset_an_open_breaker():
    breaker = CircuitBreaker("p", threshold=2, timeout=60)
    breaker.failure()
    breaker.failure()
    breaker.success()
    assert breaker.state == OPEN and breaker.failures == 2 and not breaker.allow()

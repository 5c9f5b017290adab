from adapter.engine.breaker import CircuitBreaker


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_opens_after_threshold_probes_after_cooldown_and_closes_on_success():
    clock = Clock()
    b = CircuitBreaker("lgsp", threshold=3, open_seconds=10, clock=clock)
    for _ in range(2):
        assert b.allow() == -1
        b.failure()
    assert b.view().state == "closed"
    b.failure()
    assert b.view().state == "open" and b.allow() == 0
    clock.t += 9.9
    assert b.allow() == 0
    clock.t += 0.2
    assert b.allow() == 1          # one probe
    assert b.allow() == 0          # and only one at a time
    b.success()
    assert b.view().state == "closed" and b.allow() == -1


def test_a_failed_probe_reopens_at_once():
    clock = Clock()
    b = CircuitBreaker("axis", threshold=1, open_seconds=5, clock=clock)
    b.failure()
    clock.t += 6
    assert b.allow() == 1
    b.failure()
    assert b.view().state == "open" and b.allow() == 0
    clock.t += 5.1
    assert b.allow() == 1

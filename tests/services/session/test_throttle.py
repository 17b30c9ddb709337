"""The login throttle's rules, on a clock the test moves (no servers)."""

from __future__ import annotations

from services.session.throttle import LoginThrottle, ThrottleSettings, address_key

ATTACKER, OWNER = "203.0.113.7", "198.51.100.20"


def _throttle(**overrides: float) -> LoginThrottle:
    values = {"free_failures": 3, "base_delay_s": 1.0, "max_delay_s": 60.0, "reset_s": 3600.0}
    values.update(overrides)
    return LoginThrottle(ThrottleSettings(**values))  # type: ignore[arg-type]


def _fail_until_waiting(throttle: LoginThrottle, username: str, address: str, now: float) -> float:
    """Fail as soon as allowed until an attempt must wait; the wait."""
    while (wait := throttle.retry_after(username, address, now)) == 0:
        throttle.record_failure(username, address, now)
    return wait


def test_the_first_failures_are_free_then_each_wait_doubles_up_to_the_cap() -> None:
    throttle = _throttle()
    now = 0.0
    for _ in range(3):
        assert throttle.retry_after("ann", ATTACKER, now) == 0
        throttle.record_failure("ann", ATTACKER, now)
    waits = []
    for _ in range(8):
        wait = throttle.retry_after("ann", ATTACKER, now)
        waits.append(wait)
        now += wait  # the attacker waits exactly as told, then fails again
        assert throttle.retry_after("ann", ATTACKER, now) == 0
        throttle.record_failure("ann", ATTACKER, now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_an_attacker_never_slows_the_owner_from_another_address() -> None:
    throttle = _throttle()
    assert _fail_until_waiting(throttle, "ann", ATTACKER, 0.0) > 0
    for _ in range(20):
        throttle.record_failure("ann", ATTACKER, 0.0)
    assert throttle.retry_after("ann", ATTACKER, 0.0) == 60.0
    assert throttle.retry_after("ann", OWNER, 0.0) == 0


def test_unknown_and_existing_usernames_are_throttled_alike() -> None:
    throttle = _throttle()
    # The throttle never learns whether an account exists: the same failures, the same waits.
    assert _fail_until_waiting(throttle, "ann-exists", ATTACKER, 0.0) == _fail_until_waiting(
        throttle, "nobody-by-this-name", ATTACKER, 0.0
    )


def test_a_success_forgets_the_failures_of_that_address_only() -> None:
    throttle = _throttle()
    for address in (ATTACKER, OWNER):
        for _ in range(3):
            throttle.record_failure("ann", address, 0.0)
    throttle.record_success("ann", OWNER)
    for _ in range(3):
        assert throttle.retry_after("ann", OWNER, 0.0) == 0
        throttle.record_failure("ann", OWNER, 0.0)
    assert throttle.retry_after("ann", ATTACKER, 0.0) > 0


def test_quiet_for_the_reset_time_starts_afresh() -> None:
    throttle = _throttle(reset_s=100.0)
    _fail_until_waiting(throttle, "ann", ATTACKER, 0.0)
    for _ in range(3):
        assert throttle.retry_after("ann", ATTACKER, 100.0) == 0
        throttle.record_failure("ann", ATTACKER, 100.0)


def test_one_address_spraying_many_usernames_hits_its_budget() -> None:
    throttle = _throttle(address_failures=10, address_window_s=60.0)
    for i in range(10):
        assert throttle.retry_after(f"user{i}", ATTACKER, float(i)) == 0
        throttle.record_failure(f"user{i}", ATTACKER, float(i))
    # Every username, tried before or not, now waits until the oldest failure leaves the window.
    assert throttle.retry_after("someone-new", ATTACKER, 10.0) == 50.0
    assert throttle.retry_after("someone-new", OWNER, 10.0) == 0
    assert throttle.retry_after("someone-new", ATTACKER, 60.0) == 0


def test_memory_stays_bounded_under_a_spray() -> None:
    throttle = _throttle(max_entries=1_000, address_failures=1_000_000)
    for i in range(20_000):
        throttle.record_failure(f"user{i}", f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(throttle) <= 2_000


def test_an_ipv6_client_counts_as_its_slash_64() -> None:
    throttle = _throttle()
    for i in range(3):
        throttle.record_failure("ann", f"2001:db8:1:2::{i + 1:x}", 0.0)
    assert throttle.retry_after("ann", "2001:db8:1:2:ffff::9", 0.0) > 0  # another address of the same /64
    assert throttle.retry_after("ann", "2001:db8:1:3::1", 0.0) == 0  # another network
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"

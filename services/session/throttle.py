"""Login throttling without a victim: back-off per (username, client address), a budget per address.

A hard lock per username hands the lock to whoever types wrong passwords: ten guesses from
anywhere kept the owner out. Here failures count where they come from:

- **Per (username, client address)**: after ``free_failures`` failures, each further
  attempt from that address for that username waits ``base_delay_s * 2**k`` (k = failures
  past the free ones, capped at ``max_delay_s``) after the last failure. Guessing one
  account from one address slows exponentially; the owner, from any other address, is not
  slowed at all. A success from the address forgets its failures; so does ``reset_s`` of
  quiet.
- **Per client address**: at most ``address_failures`` failures in ``address_window_s``,
  for all usernames together, so one address can't spray guesses across many accounts.

An IPv6 client counts as its /64 (:func:`address_key`): hopping addresses inside the
network one is given buys nothing.

Both apply whether the username exists or not (the key is the name as typed), so the
answers tell nothing about which accounts exist. Memory is bounded: the oldest entries
are dropped first (an address that drops its own history by flooding is held by the
address budget meanwhile).

Pure logic, no I/O: the caller passes ``now`` (monotonic seconds).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass

IPV6_PREFIX = 64
"""IPv6 clients are counted by their /64: one subscriber usually holds a whole one."""


def address_key(address: str) -> str:
    """What failures are counted by: an IPv4 address, an IPv6 /64 (IPv4-mapped ones as IPv4), else the text."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


@dataclass(frozen=True)
class ThrottleSettings:
    """The throttle's knobs (SessionSettings.login_*)."""

    free_failures: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 900.0
    reset_s: float = 3600.0
    address_failures: int = 100
    address_window_s: float = 900.0
    max_entries: int = 100_000


@dataclass
class _Pair:
    failures: int
    last_failure: float


class LoginThrottle:
    """Failed logins by (username, address) with exponential back-off, and by address in a window."""

    def __init__(self, settings: ThrottleSettings) -> None:
        self._s = settings
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        """Seconds an attempt must wait after the last of ``failures`` failures (0: none)."""
        past = failures - self._s.free_failures
        if past < 0:
            return 0.0
        return min(self._s.max_delay_s, self._s.base_delay_s * 2.0 ** min(past, 64))

    def retry_after(self, username: str, address: str, now: float) -> float:
        """Seconds before ``address`` may try ``username`` again; 0 if it may now."""
        address = address_key(address)
        wait = 0.0
        pair = self._pair(username, address, now)
        if pair is not None:
            wait = max(wait, pair.last_failure + self.delay_after(pair.failures) - now)
        window = self._window(address, now)
        if window is not None and len(window) >= self._s.address_failures:
            wait = max(wait, window[len(window) - self._s.address_failures] + self._s.address_window_s - now)
        return max(0.0, wait)

    def record_failure(self, username: str, address: str, now: float) -> None:
        """Count one failed attempt."""
        address = address_key(address)
        key = (username, address)
        pair = self._pair(username, address, now)
        if pair is None:
            pair = self._pairs[key] = _Pair(0, now)
        pair.failures += 1
        pair.last_failure = now
        self._pairs.move_to_end(key)
        window = self._window(address, now)
        if window is None:
            window = self._addresses[address] = deque()
        window.append(now)
        while len(window) > self._s.address_failures:
            window.popleft()  # only the newest `address_failures` decide the wait
        self._addresses.move_to_end(address)
        while len(self._pairs) > self._s.max_entries:
            self._pairs.popitem(last=False)
        while len(self._addresses) > self._s.max_entries:
            self._addresses.popitem(last=False)

    def record_success(self, username: str, address: str) -> None:
        """Forget the address's failures for ``username`` (not its address budget)."""
        self._pairs.pop((username, address_key(address)), None)

    def _pair(self, username: str, address: str, now: float) -> _Pair | None:
        key = (username, address)
        pair = self._pairs.get(key)
        if pair is not None and now - pair.last_failure >= self._s.reset_s:
            del self._pairs[key]
            return None
        return pair

    def _window(self, address: str, now: float) -> deque[float] | None:
        window = self._addresses.get(address)
        if window is None:
            return None
        while window and window[0] <= now - self._s.address_window_s:
            window.popleft()
        if not window:
            del self._addresses[address]
            return None
        return window

    def __len__(self) -> int:
        """Entries held (pairs and addresses), for tests of the memory bound."""
        return len(self._pairs) + len(self._addresses)

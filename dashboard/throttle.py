"""Sign-in throttling: repeated failures for one account or from one client slow down, then lock.

A scrypt hash already makes each guess cost 50 ms, but that still allows a thousand guesses a
minute against one clinician's password. So failures are counted per key (the account name typed,
and separately the client's address, which catches one machine spraying many names): after
``free_failures`` the next attempt must wait ``delay_s``, doubling per failure up to
``max_delay_s``; at ``lock_after`` failures the key is locked for ``lock_s`` and even the right
password is refused until then. A too-early attempt is refused without checking the password, so
it neither counts nor reveals anything. Failures older than ``window_s`` are forgotten, and a
successful sign-in clears the account's count (not the client's: a valid account must not reset
a sprayer's count). State lives in memory: one dashboard process serves all sign-ins, and a
restart forgetting it only gives an attacker what a restart costs them.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures are free, how the delay grows, and when and for how long a key locks."""

    free_failures: int
    delay_s: float
    max_delay_s: float
    lock_after: int
    lock_s: float
    window_s: float

    def delay_after(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (0 while still free)."""
        if failures <= self.free_failures:
            return 0.0
        return min(self.delay_s * 2 ** (failures - self.free_failures - 1), self.max_delay_s)


@dataclass(frozen=True)
class Refusal:
    """Why an attempt may not be checked now, and for how many more seconds."""

    kind: Literal["locked", "delay", "busy"]
    wait_s: float

    def message(self) -> str:
        """The sentence for the sign-in page; it never says whether the account exists."""
        if self.kind == "locked":
            minutes = math.ceil(self.wait_s / 60)
            return (f"Too many failed sign-ins. Signing in is locked for {minutes} more minute"
                    f"{'s' if minutes != 1 else ''}; ask an administrator if you need access sooner.")
        if self.kind == "busy":
            return "A sign-in for this account is already being checked. Try again in a moment."
        seconds = math.ceil(self.wait_s)
        return f"Too many failed sign-ins. Wait {seconds} second{'s' if seconds != 1 else ''} before trying again."


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class Throttle:
    """Failure counts and locks for one kind of key (account names, or client addresses)."""

    def __init__(self, policy: ThrottlePolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def refusal(self, key: str) -> Refusal | None:
        """Why ``key`` may not try now, or None if it may."""
        now = self.clock()
        record = self._records.get(key)
        if record is None:
            return None
        if record.locked_until > now:
            return Refusal("locked", record.locked_until - now)
        self._forget_old(record, now)
        if record.failures:
            ready_at = record.failures[-1] + self.policy.delay_after(len(record.failures))
            if ready_at > now:
                return Refusal("delay", ready_at - now)
        return None

    def failure(self, key: str) -> None:
        """Count a failed attempt for ``key``, locking it at the policy's count."""
        now = self.clock()
        self._prune(now)
        record = self._records.setdefault(key, _Record())
        self._forget_old(record, now)
        record.failures.append(now)
        if len(record.failures) >= self.policy.lock_after:
            record.failures.clear()  # a fresh count once the lock is over
            record.locked_until = now + self.policy.lock_s

    def success(self, key: str) -> None:
        """Forget ``key``'s failures."""
        self._records.pop(key, None)

    def _forget_old(self, record: _Record, now: float) -> None:
        record.failures[:] = [at for at in record.failures if at > now - self.policy.window_s]

    def _prune(self, now: float) -> None:
        """Drop keys with nothing left to remember, so spraying random names cannot grow memory for ever."""
        for key, record in list(self._records.items()):
            if record.locked_until <= now and all(at <= now - self.policy.window_s for at in record.failures):
                del self._records[key]


class SignInThrottle:
    """The account and the client throttles together, as the sign-in page uses them.

    An account's attempts are checked one at a time: otherwise a burst of parallel guesses would
    all pass the check before the first failure is counted.
    """

    def __init__(self, account: ThrottlePolicy, client: ThrottlePolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts = Throttle(account, clock)
        self.clients = Throttle(client, clock)
        self._in_flight: set[str] = set()

    def begin(self, username: str, client: str) -> Refusal | None:
        """Refuse the attempt (the longer hold of the two keys wins), or admit it until :meth:`end`."""
        refusal = self._refusal(username, client)
        if refusal is None and username in self._in_flight:
            refusal = Refusal("busy", 1.0)
        if refusal is None:
            self._in_flight.add(username)
        return refusal

    def end(self, username: str, client: str, *, success: bool) -> Refusal | None:
        """Count the attempt's outcome; after a failure, what now holds the next attempt back."""
        self._in_flight.discard(username)
        if success:
            self.accounts.success(username)
            return None
        self.accounts.failure(username)
        self.clients.failure(client)
        return self._refusal(username, client)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use another clock for both keys (tests step time instead of sleeping)."""
        self.accounts.clock = self.clients.clock = clock

    def _refusal(self, username: str, client: str) -> Refusal | None:
        refusals = [r for r in (self.accounts.refusal(username), self.clients.refusal(client)) if r is not None]
        return max(refusals, key=lambda r: (r.kind == "locked", r.wait_s), default=None)

"""One active operator: a coordination.k8s.io Lease, with a renew deadline that fences every side effect.

Timings follow client-go's leader election: the holder renews every `duration`/3 and must renew within
`renew_deadline` (2/3 of the duration); a standby takes the Lease over only after it has seen no renewal for
the whole `duration` on its own clock.

One definition of "renewed in time", shared by `check()`, `leading()` and `_keep()`. A renewal is a PUT
conditional on the Lease's resourceVersion as this process last wrote it; it counts once its answer has been
handled, and it counts from the moment it was *sent* (its renewTime is later than that). At instant t:
- this process *may act* (`check()` passes, `leading()` is true) iff the last renewal that counted was sent
  less than `renew_deadline` before t;
- its *term* (`_keep()`) goes on while every renewal is sent before the previous one's deadline and is
  accepted. The term ends when that deadline passes with no renewal sent, when a renewal has not answered by
  it (given at least 0.1 s), or when the Lease is found taken.
A renewal sent in time whose answer is handled after the deadline (a starved event loop handles an answer
that was already there) keeps the term: the accepted conditional PUT proves no one else wrote the Lease, and
a standby may take over only a whole `duration` after seeing that renewTime. It is counted
(`rolecall_lease_renewals_late_total`). In the gap before it is handled this process may not act: work that
meets `NotLeader` then waits for `until_acting()` (runs/fence.py) and goes on once the answer is handled,
or is cancelled by the term's end, after which the next term reconciles every object again. A frozen,
partitioned or starved leader stops acting before any standby may start: the only side effects that can
overlap a takeover are the ones already in flight when it froze.

A process that has just taken the Lease starts work only once a first renewal, sent at once, has landed
within the deadline: an acquisition answered late (an apiserver just restarted) does not let work start
that would be cancelled a moment later. A leader whose term ends does not exit: `run()` calls `on_lose`
(which cancels all work), returns to standby in the same process, and competes for the Lease again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rolecall import kube, metrics

log = logging.getLogger(__name__)


PR_SET_NAME = 15
THREAD_NAME = b"rolecall-lease"


def _name_os_thread() -> None:
    """Names the Lease's thread for the OS (`top -H`, `ps -L`, /proc/<pid>/task/*/comm), so its CPU time and
    state can be told apart from the blocking-call pool's. Outside Linux it stays unnamed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_NAME, THREAD_NAME, 0, 0, 0)


class NotLeader(Exception):
    """This process may not act now: it does not hold the Lease, or its renew deadline has passed."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Leadership:
    namespace: str
    name: str = "rolecall-operator"
    duration: float = 15
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    clock: Callable[[], float] = time.monotonic
    _renewed_at: float | None = None  # when the last successful acquire/renewal was sent (monotonic)
    _lease: dict[str, Any] | None = None  # the Lease as we last wrote it (its resourceVersion fences our PUT)
    _seen: tuple[Any, Any] | None = None
    _seen_at: float = 0.0
    _contact_at: float | None = None  # when the Lease was last read or written successfully (monotonic)
    _landed: asyncio.Event | None = None  # set (and replaced) each time a renewal's answer is handled
    renewals: int = 0
    terms: int = 0
    # The Lease's own thread: through the shared default executor a renewal queued behind every blocking
    # call of a large burst and missed its renew deadline (benchmarks/shards.py, 2,000 requests at once).
    _thread: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="lease", initializer=_name_os_thread))

    async def _on_own_thread(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    @property
    def renew_deadline(self) -> float:
        return self.duration * 2 / 3

    @property
    def renew_every(self) -> float:
        return self.duration / 3

    @property
    def retry_every(self) -> float:
        return max(0.2, self.duration / 10)

    def leading(self) -> bool:
        renewed = self._renewed_at  # read once: the health thread asks while the event loop may clear it
        return renewed is not None and self.clock() - renewed < self.renew_deadline

    def unready_reason(self) -> str | None:
        """None when this process leads, or is a standby that reached the Lease within one lease duration
        (it could take over); otherwise why it could not."""
        if self.leading():
            return None
        contact = self._contact_at
        if contact is None:
            return f"standby: has not reached the leader Lease {self.namespace}/{self.name} yet"
        silent = self.clock() - contact
        if silent > self.duration:
            return f"standby: the leader Lease {self.namespace}/{self.name} unreachable for {silent:.0f}s"
        return None

    async def until_acting(self) -> None:
        """Returns once this process may act (`leading()`), waiting for renewals to land until then; raises
        NotLeader when it has no term, or its term ends first."""
        while not self.leading():
            if self._renewed_at is None:
                raise NotLeader("the leader term ended: this operator is a standby now")
            if self._landed is None:
                self._landed = asyncio.Event()
            await self._landed.wait()

    def _wake_waiters(self) -> None:
        landed, self._landed = self._landed, None
        if landed is not None:
            landed.set()

    def check(self) -> None:
        """Raises NotLeader unless this process holds the Lease and is inside its renew deadline."""
        renewed = self._renewed_at
        if renewed is None:
            raise NotLeader("this operator is a standby: it does not hold the leader Lease")
        late = self.clock() - renewed
        if late >= self.renew_deadline:
            raise NotLeader(f"leader Lease not renewed for {late:.1f}s (renew deadline {self.renew_deadline:g}s): "
                            "another operator may take over, so this one stops acting")

    async def run(self, on_lead: Callable[[], None], on_lose: Callable[[], Awaitable[None]]) -> None:
        """Competes for the Lease, leads until the deadline is missed or the Lease is taken, then starts over."""
        led = False

        def lead() -> None:
            nonlocal led
            led = True
            self.terms += 1
            log.info("leader lease %s/%s acquired as %s", self.namespace, self.name, self.identity)
            on_lead()

        try:
            while True:
                await self._acquire()
                led = False
                # Work starts only once a renewal right after the acquisition landed in time: an apiserver that
                # answered the acquisition late (just restarted) would otherwise let a resumed fan-out start and
                # be cancelled a moment later, repeating the targets in flight once more.
                reason = await self._keep(on_first_renewal=lead)
                self._renewed_at = None
                self._wake_waiters()  # their wait ends in NotLeader
                if not led:
                    log.warning("leader lease acquired but not confirmed: %s; trying again", reason)
                    continue
                log.warning("leading stopped: %s; cancelling all work and returning to standby", reason)
                await on_lose()
        finally:  # cancelled (a stop) or failed: nothing may act on a term nobody renews, and nobody waits for one
            self._renewed_at = None
            self._wake_waiters()

    async def _acquire(self) -> None:
        while True:
            sent = self.clock()
            try:
                if await self._on_own_thread(self._try_acquire):
                    self._renewed_at = sent
                    return
            except (kube.ApiException, kube.Unavailable) as e:
                log.warning("leader lease: %s", getattr(e, "reason", None) or e)
            await asyncio.sleep(self.retry_every * 2)

    async def _keep(self, on_first_renewal: Callable[[], None] = lambda: None) -> str:
        """Renews until the Lease is lost; returns why it was lost. The first renewal is sent at once, and
        `on_first_renewal` runs when it lands."""
        next_try = self.clock()
        first = True
        while True:
            assert self._renewed_at is not None
            deadline = self._renewed_at + self.renew_deadline
            await asyncio.sleep(max(0.0, min(next_try, deadline) - self.clock()))
            if self.clock() >= deadline:
                return f"not renewed within the renew deadline ({self.renew_deadline:g}s)"
            sent = self.clock()
            # asyncio.wait, not wait_for: an answer that is there when the loop looks counts, even past the
            # deadline (the docstring's rule), and a cancel is never swallowed (Python 3.11's wait_for can swallow
            # one that arrives as the renewal answers; the Lease task then went on after cleanup cancelled it).
            renewal = asyncio.ensure_future(self._on_own_thread(self._renew))
            try:
                answered, _ = await asyncio.wait({renewal}, timeout=max(0.1, deadline - sent))
            except asyncio.CancelledError:
                renewal.cancel()  # its answer is not read
                raise
            if not answered:
                renewal.cancel()  # its answer, if one comes, is not read
                return f"renewal did not answer before the renew deadline ({self.renew_deadline:g}s)"
            try:
                held = renewal.result()
            except (kube.ApiException, kube.Unavailable) as e:
                log.warning("leader lease renewal failed: %s", getattr(e, "reason", None) or e)
                next_try = self.clock() + self.retry_every
                continue
            self._contact_at = self.clock()
            if not held:
                return "the Lease is held by another operator"
            late = self.clock() - deadline
            self._renewed_at = sent
            self.renewals += 1
            if late >= 0:
                metrics.LEASE_RENEWALS_LATE.inc()
                log.warning("leader lease renewal sent %.1fs before the renew deadline was handled %.1fs after it "
                            "(the event loop was busy): the term goes on; acting %s", deadline - sent, late,
                            "again" if self.leading() else "stays paused until the next renewal")
            self._wake_waiters()
            next_try = sent + self.renew_every
            if first and late < 0:  # work starts only on a renewal that landed in time (see the docstring)
                first = False
                on_first_renewal()

    def _spec(self, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        now = _now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions}

    def _try_acquire(self) -> bool:
        api = kube.coordination()
        metrics.api("get", "leases")
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
            self._contact_at = self.clock()
        except kube.ApiException as e:
            if e.status != 404:
                raise
            self._contact_at = self.clock()
            body = {"metadata": {"name": self.name}, "spec": self._spec(0)}
            metrics.api("create", "leases")
            try:
                created = api.create_namespaced_lease(self.namespace, body)
            except kube.ApiException as e2:
                if e2.status == 409:
                    return False
                raise
            self._remember(created.metadata.resource_version, body["spec"])
            return True
        spec = lease.spec
        observed = (spec.holder_identity, spec.renew_time)
        if observed != self._seen:
            self._seen, self._seen_at = observed, self.clock()
        free = not spec.holder_identity or spec.holder_identity == self.identity
        expired = self.clock() - self._seen_at > (spec.lease_duration_seconds or self.duration)
        if not (free or expired):
            return False
        new = self._spec((spec.lease_transitions or 0) + 1)
        body = {"metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version}, "spec": new}
        metrics.api("update", "leases")
        try:
            written = api.replace_namespaced_lease(self.name, self.namespace, body)
        except kube.ApiException as e:
            if e.status == 409:  # someone else moved first
                return False
            raise
        self._remember(written.metadata.resource_version, new)
        return True

    def _remember(self, resource_version: str, spec: dict[str, Any]) -> None:
        self._lease = {"metadata": {"name": self.name, "resourceVersion": resource_version}, "spec": dict(spec)}

    def _renew(self) -> bool:
        """One PUT carrying the resourceVersion we last wrote: a conflict means someone else wrote the Lease."""
        api = kube.coordination()
        if self._lease is None:
            return False
        spec = {**self._lease["spec"], "renewTime": _now()}
        body = {"metadata": self._lease["metadata"], "spec": spec}
        metrics.api("update", "leases")
        try:
            written = api.replace_namespaced_lease(self.name, self.namespace, body)
        except kube.ApiException as e:
            if e.status != 409:
                raise
            metrics.api("get", "leases")
            lease = api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return False
            self._remember(lease.metadata.resource_version, spec)  # our own write whose answer we missed
            return self._renew()
        self._remember(written.metadata.resource_version, spec)
        return True

    async def release(self) -> None:
        """On a graceful stop, hand the Lease back so a successor need not wait for it to expire (when the
        Lease still names this process: `_release` reads it first)."""
        if self._lease is None:
            return  # never held it
        self._renewed_at = None  # stop acting first
        self._wake_waiters()
        try:
            await self._on_own_thread(self._release)
        except Exception as e:
            log.warning("could not release the leader lease: %s", e)

    def _release(self) -> None:
        api = kube.coordination()
        metrics.api("get", "leases")
        lease = api.read_namespaced_lease(self.name, self.namespace)
        if lease.spec.holder_identity != self.identity:
            return
        metrics.api("patch", "leases")
        api.patch_namespaced_lease(self.name, self.namespace, {
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {"holderIdentity": None, "renewTime": None, "acquireTime": None}})
        log.info("leader lease released")

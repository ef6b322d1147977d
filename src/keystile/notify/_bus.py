"""What both notifying change buses share (SPEC V6): local delivery first, payloads, reconnection.

A change is delivered to this process's listeners at once, before anything goes over the network, so that a
process never serves what it has itself just changed. It then goes out as one or more payloads (JSON, each under
:data:`MAX_PAYLOAD` bytes, PostgreSQL's NOTIFY limit being 8000) that carry the sending process's ``origin``,
so that a process skips its own messages when they come back.

A subscription that drops may have missed messages, so listeners get ``Change("lost")`` when it drops (and again
after every failed attempt to reconnect, at most a second apart) and ``Change("all")`` when it is back: caches then
ask storage again before trusting an entry, live a short TTL while the channel is down, and keep serving their
entries while storage cannot be reached (SPEC V6). A publish that fails is kept and sent again in the background.

An outage is logged once, not at every attempt: a warning when the subscription is lost or cannot be made (where,
without the password, and why), a reminder every :data:`REPORT_S` while it stays down, and a line when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence

from keystile.core.clock import Clock, SystemClock
from keystile.core.ports import Change, ChangeListener
from keystile.errors import StorageError

log = logging.getLogger("keystile.notify")

MAX_PAYLOAD = 7900
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0
RESEND_S = 0.5
MAX_OUTBOX = 10_000
REPORT_S = 60.0
"""While the subscription stays down, how often that is logged again (its attempts are not)."""
ALL = (Change("all"),)
LOST = (Change("lost"),)


def encode(origin: str, changes: Sequence[Change], limit: int = MAX_PAYLOAD) -> list[str]:
    """``changes`` as payloads of at most ``limit`` ASCII bytes each (a change too big for one: ``all``)."""
    head = f'{{"o":{json.dumps(origin)},"c":['
    payloads: list[str] = []
    items: list[str] = []
    size = len(head) + 2
    for change in changes:
        item = json.dumps([change.kind, change.ref], separators=(",", ":"))
        if len(head) + len(item) + 2 > limit:
            item = '["all",""]'
        if items and size + len(item) + 1 > limit:
            payloads.append(head + ",".join(items) + "]}")
            items, size = [], len(head) + 2
        items.append(item)
        size += len(item) + 1
    if items:
        payloads.append(head + ",".join(items) + "]}")
    return payloads


def decode(payload: str | bytes) -> tuple[str, list[Change]]:
    """``(origin, changes)`` of a payload; raises ValueError when it is not one of ours."""
    try:
        data = json.loads(payload)
        changes = [Change(str(kind), str(ref)) for kind, ref in data["c"]]  # type: ignore[arg-type]
        origin = str(data["o"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError("not a change payload") from exc
    if any(change.kind not in ("key", "api", "owner", "all", "credits") for change in changes):
        raise ValueError("unknown change kind")
    return origin, changes


class NotifyingBus:
    """The shared half of a change bus that reaches other processes; subclasses send and listen. ``where`` names
    what it subscribes to in logs (never with a password); ``clock`` times how long an outage has lasted.

    Counters: ``published`` payloads, ``received`` payloads from other processes, ``publish_errors``,
    ``reconnects`` (subscriptions lost), ``connected`` while subscribed.
    """

    notifying = True

    def __init__(self, where: str = "the change channel", clock: Clock | None = None) -> None:
        self.where = where
        self._clock: Clock = clock or SystemClock()
        self._down_since: float | None = None  # when the subscription was lost or first failed (clock.monotonic)
        self._reported_at = 0.0
        self.origin = secrets.token_hex(8)
        self._listeners: list[ChangeListener] = []
        self._outbox: list[str] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tried = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.published = self.received = self.publish_errors = self.reconnects = 0

    @property
    def stats(self) -> dict[str, int]:
        return {
            "published": self.published,
            "received": self.received,
            "publish_errors": self.publish_errors,
            "reconnects": self.reconnects,
            "connected": int(self.connected),
        }

    # -- subclasses -----------------------------------------------------------------------------------------

    async def _send(self, payload: str) -> None:
        """Send one payload; raise :class:`StorageError` when it cannot be sent."""
        raise NotImplementedError

    async def _listen(self, subscribed: Callable[[], None]) -> None:
        """Subscribe, call ``subscribed()`` once listening, pass messages to :meth:`received_payload`, and return
        or raise (:class:`StorageError`) when the subscription ends."""
        raise NotImplementedError

    # -- the ChangeBus port ---------------------------------------------------------------------------------

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def publish(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` in this process at once, then send them to the others (later, if that fails)."""
        self._deliver(changes)
        payloads = encode(self.origin, changes)
        for index, payload in enumerate(payloads):
            try:
                await self._send(payload)
            except StorageError as exc:
                self.publish_errors += 1
                log.warning("could not publish a change (%s); sending it again shortly", exc.detail)
                self._keep(payloads[index:])
                return
            self.published += 1

    async def start(self) -> None:
        """Start listening; returns once the first attempt to subscribe has succeeded or failed (the bus then
        keeps trying in the background)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="keystile-bus"), loop.create_task(self._resend())]
        await self._tried.wait()

    async def close(self) -> None:
        """Stop listening and sending; changes not sent by then are dropped (other caches expire them)."""
        self._stop.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._listeners.clear()

    # -- inside -----------------------------------------------------------------------------------------------

    def received_payload(self, payload: str | bytes) -> None:
        """A message from the subscription: apply it unless this process sent it."""
        try:
            origin, changes = decode(payload)
        except ValueError:
            log.warning("ignored a message on the change channel that is not a change")
            return
        if origin != self.origin:
            self.received += 1
            self._deliver(changes)

    def _deliver(self, changes: Sequence[Change]) -> None:
        for listener in self._listeners:
            try:
                listener(changes)
            except Exception:  # one broken listener must not keep changes from the others
                log.exception("a change listener failed")

    def _subscribed(self) -> None:
        self.connected = True
        if self._down_since is not None:
            down_s = self._clock.monotonic() - self._down_since
            self._down_since = None
            log.info("the change subscription to %s is back after %.1f s", self.where, down_s)
        # Anything may have changed while no one was listening (or before this process subscribed at all).
        self._deliver(ALL)
        self._tried.set()

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            error: BaseException | None = None
            try:
                await self._listen(self._subscribed)
                reason = "it ended"
            except StorageError as exc:
                reason = exc.detail
            except Exception as exc:  # a bug: logged with its stack trace (once per outage, like the rest)
                reason, error = f"{type(exc).__name__}: {exc}", exc
            self._tried.set()
            if self._stop.is_set():
                return
            self._report(reason, error, lost=self.connected)
            if self.connected:
                self.reconnects += 1
                backoff = FIRST_BACKOFF_S
            self.connected = False
            self._deliver(LOST)
            await self._pause(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _report(self, reason: str, error: BaseException | None, *, lost: bool) -> None:
        """Log a failed attempt if it starts an outage, or if the last word on this one is :data:`REPORT_S` old."""
        now = self._clock.monotonic()
        if self._down_since is None:
            self._down_since = self._reported_at = now
            log.warning(
                "the change subscription to %s %s (%s); retrying at least once a second, and until it is back "
                "cached keys are checked against storage again and kept a short TTL",
                self.where,
                "was lost" if lost else "cannot be made",
                reason,
                exc_info=error,
            )
        elif now - self._reported_at >= REPORT_S:
            self._reported_at = now
            log.warning(
                "the change subscription to %s is still down after %.0f s (%s); retrying at least once a second",
                self.where,
                now - self._down_since,
                reason,
                exc_info=error,
            )

    def _keep(self, payloads: Sequence[str]) -> None:
        self._outbox.extend(payloads)
        if len(self._outbox) > MAX_OUTBOX:
            # Too much to keep: tell everyone to drop everything instead.
            self._outbox = encode(self.origin, ALL)
        self._wake.set()

    async def _resend(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and not self._stop.is_set():
                try:
                    await self._send(self._outbox[0])
                except StorageError:
                    self.publish_errors += 1
                    await self._pause(RESEND_S)
                    continue
                self._outbox.pop(0)
                self.published += 1

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry backoff), or less when the bus is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

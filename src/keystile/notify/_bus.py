"""What both notifying change buses share (SPEC V6): local delivery first, payloads, reconnection.

A change is delivered to this process's listeners at once, before anything goes over the network, so that a
process never serves what it has itself just changed. It then goes out as one or more payloads (JSON, each under
:data:`MAX_PAYLOAD` bytes, PostgreSQL's NOTIFY limit being 8000) that carry the sending process's ``origin``,
so that a process skips its own messages when they come back.

A subscription that drops may have missed messages, so listeners get ``Change("lost")`` when it drops (and again
after every failed attempt to reconnect, at most a second apart) and ``Change("all")`` when it is back: caches then
ask storage again before trusting an entry, live a short TTL while the channel is down, and keep serving their
entries while storage cannot be reached (SPEC V6). A publish that fails is kept and sent again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence

from keystile.core.ports import Change, ChangeListener
from keystile.errors import StorageError

log = logging.getLogger("keystile.notify")

MAX_PAYLOAD = 7900
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0
RESEND_S = 0.5
MAX_OUTBOX = 10_000
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
    """The shared half of a change bus that reaches other processes; subclasses send and listen.

    Counters: ``published`` payloads, ``received`` payloads from other processes, ``publish_errors``,
    ``reconnects`` (subscriptions lost), ``connected`` while subscribed.
    """

    notifying = True

    def __init__(self) -> None:
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
        # Anything may have changed while no one was listening (or before this process subscribed at all).
        self._deliver(ALL)
        self._tried.set()

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                await self._listen(self._subscribed)
            except StorageError as exc:
                log.warning("change subscription failed: %s", exc.detail)
            except Exception:
                log.exception("change subscription failed")
            self._tried.set()
            if self._stop.is_set():
                return
            if self.connected:
                self.reconnects += 1
                backoff = FIRST_BACKOFF_S
            self.connected = False
            self._deliver(LOST)
            await self._pause(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

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

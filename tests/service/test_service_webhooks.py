"""Webhooks through the services (SPEC R5): a real receiver (an HTTP server in a thread) checks every signature
with the ``standardwebhooks`` package and sees each event of a session once; retries back off and end ``failed``;
secrets rotate with both signatures sent; the SSRF guard; nothing secret is stored in plain text (issue 12)."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook
from tests.conftest import MASTER_KEY
from tests.service.conftest import Admin
from tests.webhook_receiver import Received, Receiver, receiver

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import KeyUpdate, NewApi, NewCredits, NewKey
from keystile.core.models import AuditFilter, KeyFilter
from keystile.core.verify import KeyCheck
from keystile.core.webhooks import EVENT_TYPES, NewWebhook, WebhookUpdate
from keystile.errors import Forbidden, InvalidInput, NotFound
from keystile.service import Keystile
from keystile.service.authz import Actor
from keystile.service.credits_watch import CreditsWatch
from keystile.service.deliverer import Deliverer
from keystile.service.scheduler import Scheduler
from keystile.service.webhooks import WebhookService
from keystile.storage import SqlStorage

DAY_S = 86_400.0


@pytest.fixture
def clock() -> ManualClock:
    # Standard Webhooks receivers refuse timestamps more than 5 minutes from their own clock.
    return ManualClock(time.time())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        master_key=MASTER_KEY.hex(),
        webhooks_allow_private=True,
        webhooks_retry_base_ms=1000,
        webhooks_retry_window_ms=60_000,
    )


async def drain(deliverer: Deliverer) -> None:
    while await deliverer.run_once():
        pass


async def test_a_session_reaches_the_receiver_signed_once_each(
    ks: Keystile, admin: Admin, clock: ManualClock, storage: SqlStorage
) -> None:
    deliverer = Deliverer(ks.ctx, ks.webhooks)
    scheduler = Scheduler(ks.ctx, 60_000)
    watch = ks.verification.credits_watch = CreditsWatch(ks.ctx)
    await scheduler.scan()  # starts watching now
    clock.advance(0.01)
    with receiver() as rx:
        endpoint, secret = await ks.webhooks.create(admin.actor, NewWebhook(url=rx.url, events=EVENT_TYPES))
        assert secret.startswith("whsec_")
        rx.secrets.append(secret)
        await watch.flush()  # sees that an endpoint wants credits events
        api = await admin.api(NewApi(name="billing"))
        key, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="a"))
        await ks.keys.update(admin.actor, key.id, KeyUpdate(name="b"))
        await ks.keys.revoke(admin.actor, key.id)
        other, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="c"))
        new, _ = await ks.keys.reroll(admin.actor, other.id)
        await ks.keys.delete(admin.actor, other.id)
        leaked, _ = await ks.keys.create(admin.actor, api.id, NewKey(name="leaked"))
        await ks.leaks.report(admin.actor, leaked.digest, {"url": "https://example.com/x"})
        metered, plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=20)))
        for _ in range(20):  # 10% of 20 is 2: low when 2 are left, exhausted at 0; each once
            assert (await ks.verification.verify(admin.actor.principal, KeyCheck(plain))).valid
            await watch.flush()
        assert not (await ks.verification.verify(admin.actor.principal, KeyCheck(plain))).valid
        await watch.flush()
        # The receiver checks timestamps against its own clock: the session's clock moves a few seconds only.
        in_days = [(3.0, "in three days"), (0.5, "in twelve hours"), (2 / DAY_S, "in two seconds")]
        expiring = []
        for days, name in in_days:
            at = datetime.fromtimestamp(clock.now() + days * DAY_S, UTC)
            expiring.append((await ks.keys.create(admin.actor, api.id, NewKey(name=name, expires_at=at)))[0])
        await drain(deliverer)
        await scheduler.scan()  # written since the last scan, expiring within a week (or a day)
        clock.advance(3)
        await scheduler.scan()  # expired
        await scheduler.scan()  # nothing twice
        await drain(deliverer)

        events = rx.events()
        assert all(r.verified for r in rx.received)
        assert len(rx.received) == len(rx.unique())
    expected = [
        ("key.created", key.id),
        ("key.updated", key.id),
        ("key.revoked", key.id),
        ("key.created", other.id),
        ("key.rerolled", new.id),
        ("key.deleted", other.id),
        ("key.created", leaked.id),
        ("key.revoked", leaked.id),
        ("key.leaked", leaked.id),
        ("key.created", metered.id),
        ("credits.low", metered.id),
        ("credits.exhausted", metered.id),
        *[("key.created", k.id) for k in expiring],
        *[("key.expiring", k.id) for k in expiring],
        ("key.expired", expiring[2].id),
    ]
    assert Counter(events) == Counter(expected)
    for key_id in {k for _, k in expected}:  # in order per key
        assert [e for e in events if e[1] == key_id] == [e for e in expected if e[1] == key_id]
    bodies = {(r.body["type"], r.body["data"]["id"]): r.body for r in rx.unique().values()}
    notices = [bodies["key.expiring", k.id]["data"]["expires_in_days"] for k in expiring]
    assert notices == [7, 1, 1]
    assert bodies["key.rerolled", new.id]["data"]["previous"]["id"] == other.id
    assert bodies["credits.low", metered.id]["data"]["credits"]["remaining"] == 2
    assert bodies["credits.low", metered.id]["data"]["threshold"] == 2
    assert bodies["credits.exhausted", metered.id]["data"]["credits"]["remaining"] == 0
    assert all(set(b) == {"type", "timestamp", "data"} for b in bodies.values())
    [created] = await admin.audit(AuditFilter(action="webhook.create"))
    assert created.target == endpoint.id
    assert "secret" not in str(created.changes)


async def test_a_failing_receiver_gets_retries_with_growing_delays(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    deliverer = Deliverer(ks.ctx, ks.webhooks)
    with receiver(answer=lambda n: 500 if n < 3 else 200) as rx:
        endpoint, secret = await ks.webhooks.create(admin.actor, NewWebhook(url=rx.url, events=["key.created"]))
        rx.secrets.append(secret)
        api = await admin.api()
        await ks.keys.create(admin.actor, api.id, NewKey())
        times = []
        for _ in range(10):
            if await deliverer.run_once():
                times.append(clock.now())
            page = await ks.webhooks.deliveries(admin.actor.principal, endpoint.id)
            [view] = page.items
            if view.delivery.state != "pending":
                break
            clock.advance((view.delivery.next_at or 0) / 1000 - clock.now())
        assert [r.status for r in rx.received] == [500, 500, 500, 200]
    assert view.delivery.state == "delivered"
    assert view.delivery.attempts == 4
    assert [a.status for a in view.attempts] == [500, 500, 500, 200]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] < gaps[1] < gaps[2], gaps


async def test_a_receiver_that_never_recovers_ends_failed_and_can_be_resent(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    deliverer = Deliverer(ks.ctx, ks.webhooks)
    broken = True
    with receiver(answer=lambda n: 503 if broken else 200) as rx:
        endpoint, secret = await ks.webhooks.create(admin.actor, NewWebhook(url=rx.url, events=["key.created"]))
        rx.secrets.append(secret)
        api = await admin.api()
        await ks.keys.create(admin.actor, api.id, NewKey())
        for _ in range(60):
            await deliverer.run_once()
            if (await ks.webhooks.deliveries(admin.actor.principal, endpoint.id, state="failed")).items:
                break
            clock.advance(2)
        [view] = (await ks.webhooks.deliveries(admin.actor.principal, endpoint.id, state="failed")).items
        assert view.delivery.attempts == len(view.attempts) >= 3
        assert all(a.status == 503 and a.latency_ms >= 0 for a in view.attempts)

        broken = False
        retried = await ks.webhooks.retry(admin.actor, endpoint.id, view.delivery.id)
        assert retried.state == "pending"
        await drain(deliverer)
        [done] = (await ks.webhooks.deliveries(admin.actor.principal, endpoint.id)).items
        assert done.delivery.state == "delivered"
        assert len(rx.unique()) == 1
        assert all(r.verified for r in rx.received)
    with pytest.raises(NotFound):
        await ks.webhooks.retry(admin.actor, endpoint.id, "dlv_0000000000000000000000")


async def test_a_rotated_secret_signs_beside_the_old_one_for_the_grace_period(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    deliverer = Deliverer(ks.ctx, ks.webhooks)
    with receiver() as rx:
        endpoint, old = await ks.webhooks.create(admin.actor, NewWebhook(url=rx.url, events=["key.created"]))
        _, new = await ks.webhooks.rotate_secret(admin.actor, endpoint.id, grace_period_ms=60_000)
        assert new != old
        api = await admin.api()
        await ks.keys.create(admin.actor, api.id, NewKey())
        await drain(deliverer)
        clock.advance(61)
        await ks.keys.create(admin.actor, api.id, NewKey())
        await drain(deliverer)
        first, second = sorted(rx.received, key=lambda r: r.at)
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    body = json.dumps(first.body).encode()  # not the bytes signed: no signature verifies it
    assert not Receiver(secrets=[old, new]).verify(body, first.headers)
    assert first.verified is second.verified is False  # the receiver was given no secret
    raw = {r.headers["webhook-id"]: r for r in rx.received}
    assert raw  # both arrived; their signatures are checked against each secret below
    assert _signed_by(first, old)
    assert _signed_by(first, new)
    assert not _signed_by(second, old)
    assert _signed_by(second, new)


def _signed_by(received: Received, secret: str) -> bool:
    """Whether one of the post's signatures is ``secret``'s (checked with standardwebhooks' own signer)."""
    signed = Webhook(secret).sign(
        received.headers["webhook-id"],
        datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), UTC),
        received.raw.decode(),
    )
    return signed in received.headers["webhook-signature"].split(" ")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost:9/x",
    ],
)
async def test_private_addresses_are_refused_unless_allowed(
    storage: SqlStorage, clock: ManualClock, database_url: str, url: str
) -> None:
    strict = Keystile.create(storage, Settings(database_url=database_url, master_key=MASTER_KEY.hex()), clock)
    created = await strict.root_keys.bootstrap()
    assert created is not None
    actor = Actor(await strict.root_keys.authenticate(created[1]))
    with pytest.raises(InvalidInput) as refused:
        await strict.webhooks.create(actor, NewWebhook(url=url, events=["key.created"]))
    assert refused.value.code == "webhook_url_forbidden"
    endpoint, _ = await strict.webhooks.create(actor, NewWebhook(url="https://93.184.215.14/x", events=["key.created"]))
    with pytest.raises(InvalidInput):
        await strict.webhooks.update(actor, endpoint.id, WebhookUpdate(url=url))


async def test_bad_endpoints_and_missing_permissions_are_refused(ks: Keystile, admin: Admin) -> None:
    for spec in (
        NewWebhook(url="ftp://example.com/x", events=["key.created"]),
        NewWebhook(url="http://127.0.0.1/x", events=[]),
        NewWebhook(url="http://127.0.0.1/x", events=["key.nope"]),
        NewWebhook(url="http://127.0.0.1/x", events=["key.created"], api_ids=["not-an-id"]),
    ):
        with pytest.raises(InvalidInput):
            await ks.webhooks.create(admin.actor, spec)
    reader = await admin.actor_with("webhooks.read")
    endpoint, _ = await ks.webhooks.create(admin.actor, NewWebhook(url="http://127.0.0.1/x", events=["key.created"]))
    assert (await ks.webhooks.get(reader.principal, endpoint.id)).id == endpoint.id
    assert [ep.id for ep in (await ks.webhooks.list(reader.principal)).items] == [endpoint.id]
    with pytest.raises(Forbidden):
        await ks.webhooks.delete(reader, endpoint.id)
    keys_only = await admin.actor_with("keys.read")
    with pytest.raises(Forbidden):
        await ks.webhooks.list(keys_only.principal)
    await ks.webhooks.update(admin.actor, endpoint.id, WebhookUpdate(enabled=False, api_ids=None, set_api_ids=True))
    await ks.webhooks.delete(admin.actor, endpoint.id)
    with pytest.raises(NotFound):
        await ks.webhooks.get(admin.actor.principal, endpoint.id)
    actions = Counter(e.action for e in await admin.audit() if e.action.startswith("webhook."))
    assert actions == {"webhook.create": 1, "webhook.update": 1, "webhook.delete": 1}


async def test_no_secret_and_no_key_is_stored_in_plain_text(
    ks: Keystile, admin: Admin, storage: SqlStorage, database_url: str, tmp_path: Path
) -> None:
    deliverer = Deliverer(ks.ctx, ks.webhooks)
    with receiver() as rx:
        endpoint, secret = await ks.webhooks.create(admin.actor, NewWebhook(url=rx.url, events=EVENT_TYPES))
        _, rotated = await ks.webhooks.rotate_secret(admin.actor, endpoint.id)
        api = await admin.api()
        key, plain = await ks.keys.create(admin.actor, api.id, NewKey(credits=NewCredits(remaining=5)))
        _, plain2 = await ks.keys.reroll(admin.actor, key.id)
        await ks.verification.verify(admin.actor.principal, KeyCheck(plain2))
        await drain(deliverer)
        assert len(rx.unique()) == 2
    needles = [s.encode() for s in (secret, rotated, plain, plain2)]
    needles += [s.removeprefix("whsec_").encode() for s in (secret, rotated)]
    for table in ("webhook_endpoints", "webhook_messages", "webhook_deliveries", "webhook_attempts", "audit_log"):
        for row in await storage.driver.fetchall(f"SELECT * FROM {table}"):
            text = b" ".join(
                bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                for v in tuple(row)  # the values
            )
            assert not any(n in text for n in needles), table
    if database_url.startswith("sqlite:///"):
        raw = Path(database_url.removeprefix("sqlite:///")).read_bytes()  # noqa: ASYNC240 - a test's read
        assert not any(n in raw for n in needles)


async def test_the_scheduler_finds_a_stale_key_once_even_with_two_servers(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    endpoint, _ = await ks.webhooks.create(
        admin.actor, NewWebhook(url="http://127.0.0.1:9/x", events=["key.rotation_due", "key.expired"])
    )
    api = await admin.api(NewApi(name="rotated", max_key_age_days=30))
    old, _ = await ks.keys.create(admin.actor, api.id, NewKey())
    first, second = Scheduler(ks.ctx, 1000), Scheduler(ks.ctx, 1000)
    assert await first.scan() == 0  # nothing is stale yet
    clock.advance(31 * DAY_S)
    await ks.keys.create(admin.actor, api.id, NewKey())  # young
    assert await first.scan() == 1
    assert await second.scan() == 0  # the first holds the lease
    clock.advance(3)  # the lease has expired
    assert await second.scan() == 0  # found already
    assert await first.scan() == 0
    deliveries = (await ks.webhooks.deliveries(admin.actor.principal, endpoint.id)).items
    assert [(d.delivery.type, d.delivery.state) for d in deliveries] == [("key.rotation_due", "pending")]
    assert old.id in {k.id for k in (await ks.keys.list(admin.actor.principal, api.id, KeyFilter())).items}


async def test_a_redirect_is_not_followed_and_a_private_address_is_checked_again_when_posting(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    with receiver(answer=lambda n: 302) as rx:
        endpoint, _ = await ks.webhooks.create(admin.actor, NewWebhook(url=rx.url, events=["key.created"]))
        api = await admin.api()
        await ks.keys.create(admin.actor, api.id, NewKey())
        await Deliverer(ks.ctx, ks.webhooks).run_once()
        [view] = (await ks.webhooks.deliveries(admin.actor.principal, endpoint.id)).items
        assert view.delivery.state == "pending"
        assert [a.status for a in view.attempts] == [302]
        assert len(rx.received) == 1

        # A server that does not allow private addresses refuses to post there, whatever the endpoint says.
        strict = WebhookService(ks.ctx, ks.vault, replace(ks.webhooks.options, allow_private=False))
        clock.advance(2)  # the retry is due
        await Deliverer(ks.ctx, strict).run_once()
        [view] = (await ks.webhooks.deliveries(admin.actor.principal, endpoint.id)).items
        assert len(rx.received) == 1
    last = view.attempts[-1]
    assert last.status is None
    assert last.error is not None
    assert "private address" in last.error

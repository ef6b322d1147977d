"""The request body deadline: a request waiting for its body inside ``read_body`` for ``timeout_s`` is cut off with
408 ``body_timeout``; anything else a task waits for is left alone, and a cancellation from anywhere else stays a
cancellation. Over a real socket and granian: tests/e2e/test_slow_bodies.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from keystile.config import Settings
from keystile.http.asgi import Message, SlowBody, read_body
from keystile.http.deadline import BodyDeadline, reading_body, start_body_deadline, stop_body_deadline
from keystile.server.app import create_app
from keystile.service import Actor, Keystile


def never() -> Any:
    """A ``receive`` whose body never comes (the client sent its headers, then nothing)."""

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def trickle(*parts: bytes, gap_s: float) -> Any:
    """A ``receive`` handing over ``parts`` ``gap_s`` apart."""
    queue = list(parts)

    async def receive() -> Message:
        await asyncio.sleep(gap_s)
        part = queue.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(queue)}

    return receive


async def test_a_request_waiting_for_its_body_past_the_deadline_is_cut_off() -> None:
    deadline = BodyDeadline(timeout_s=5.0)
    reading = asyncio.ensure_future(read_body(never(), 1024))
    elsewhere = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)  # both are now waiting
    assert reading_body(reading)
    assert not reading_body(elsewhere)

    now = asyncio.get_running_loop().time()
    assert deadline.sweep(now) == 0  # first seen waiting now
    assert deadline.sweep(now + 4.9) == 0
    assert deadline.sweep(now + 5.0) == 1
    with pytest.raises(SlowBody) as raised:
        await reading
    assert raised.value.code == "body_timeout"
    assert str(raised.value) == "the request body did not arrive within 5 s"
    assert reading.cancelling() == 0, "the cancellation was taken back: the request answers on"

    assert deadline.sweep(now + 3600) == 0, "a task waiting for anything but a body is never cut off"
    assert not elsewhere.done()
    elsewhere.cancel()
    assert deadline.cut == 1


async def test_another_cancellation_of_a_request_reading_its_body_stays_a_cancellation() -> None:
    reading = asyncio.ensure_future(read_body(never(), 1024))
    await asyncio.sleep(0)
    reading.cancel()  # the server shutting down, or the client gone
    with pytest.raises(asyncio.CancelledError):
        await reading


async def test_a_body_that_trickles_in_within_the_deadline_is_read_whole() -> None:
    deadline = start_body_deadline(0.3)
    try:
        body = await read_body(trickle(b'{"a":', b" 1", b"}", gap_s=0.05), 1024)
    finally:
        await stop_body_deadline(deadline)
    assert body == b'{"a": 1}'
    assert deadline.cut == 0


async def test_one_deadline_per_event_loop_the_shorter_timeout_applies() -> None:
    first = start_body_deadline(10.0)
    second = start_body_deadline(0.2)
    try:
        assert second is first
        assert first.timeout_s == 0.2
        assert first.interval_s <= 0.1
        with pytest.raises(SlowBody):
            await asyncio.wait_for(read_body(never(), 1024), timeout=5)
    finally:
        await stop_body_deadline(first)
    assert first.cut == 1
    third = start_body_deadline(1.0)
    try:
        assert third is not first, "a stopped deadline is not reused"
    finally:
        await stop_body_deadline(third)


def post_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a POST to ``path`` that declares a 40-byte body."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"keystile"), (b"content-length", b"40"), *headers],
        "client": ("203.0.113.9", 4000),
        "server": ("127.0.0.1", 8787),
    }


async def call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the ASGI app whose body never comes; the status, headers and body it answers."""
    scope = post_scope(path, headers)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, never(), send), timeout=10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


@pytest.mark.parametrize(
    ("path", "content_type", "answer"),
    [
        ("/v1/keys/verify", b"application/json", "problem"),
        ("/v1/apis", b"application/json", "problem"),
        ("/oauth/token", b"application/x-www-form-urlencoded", "problem"),
        ("/v2/keys.verifyKey", b"application/json", "unkey"),
        ("/dashboard/sign-in", b"application/x-www-form-urlencoded", "page"),
    ],
)
async def test_every_route_that_reads_a_body_answers_408_when_it_does_not_come(
    ks: Keystile, root: tuple[Actor, str], settings: Settings, path: str, content_type: bytes, answer: str
) -> None:
    app = create_app(settings, keystile=ks)
    headers = [(b"content-type", content_type)]
    if path != "/oauth/token":  # its client authenticates in the body, or with HTTP Basic
        headers.append((b"authorization", f"Bearer {root[1]}".encode()))
    deadline = start_body_deadline(0.2)
    try:
        status, response_headers, body = await call(app, path, headers)
    finally:
        await stop_body_deadline(deadline)

    assert status == 408, body
    assert deadline.cut == 1
    if answer == "problem":
        assert response_headers[b"content-type"] == b"application/problem+json"
        problem = json.loads(body)
        assert (problem["status"], problem["code"], problem["title"]) == (408, "body_timeout", "Request timeout")
        assert problem["detail"] == "the request body did not arrive within 0.2 s"
        assert response_headers[b"connection"] == b"close"
    elif answer == "unkey":
        error = json.loads(body)["error"]
        assert (error["status"], error["title"]) == (408, "Request Timeout")
        assert error["type"].endswith("/user/bad_request/request_timeout")
        assert response_headers[b"connection"] == b"close"
    else:
        assert b"did not arrive within 0.2 s" in body


class Receive:
    """A ``receive`` (as granian's is: a method of the object that holds the request's body and connection)
    whose body never comes."""

    async def __call__(self) -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/apis", "/v2/keys.verifyKey", "/dashboard/sign-in"])
async def test_a_request_cut_off_is_freed_at_once_not_by_the_garbage_collector(
    ks: Keystile, root: tuple[Actor, str], settings: Settings, path: str
) -> None:
    """granian closes the connection when the request's body is dropped: a reference cycle through the error
    (its traceback, a frame, the ``receive`` of the request) would hold it open until the collector runs."""
    import gc
    import weakref

    app = create_app(settings, keystile=ks)
    receive = Receive()
    gone = weakref.ref(receive)
    content_type = b"application/x-www-form-urlencoded" if "dashboard" in path else b"application/json"
    scope = post_scope(path, [(b"content-type", content_type), (b"authorization", f"Bearer {root[1]}".encode())])
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    deadline = start_body_deadline(0.2)
    gc.collect()
    gc.disable()
    try:
        await asyncio.wait_for(asyncio.ensure_future(app(scope, receive, send)), timeout=10)
        del receive
        assert statuses == [408]
        assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
    finally:
        gc.enable()
        await stop_body_deadline(deadline)

"""JSON logs (SPEC O4): one object per line with ts, level, logger, message and the request id; an access line
per management request and none per verification; never a key, wherever a client put it."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keystile.core import keys as keyformat
from keystile.observability.logs import REQUEST_ID, JsonFormatter, logging_config

from .conftest import bearer


class Captured:
    """What the root logger wrote, formatted by :class:`JsonFormatter`."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "keystile.access"]


@pytest.fixture
def logs() -> Iterator[Captured]:
    """JSON lines of Keystile's loggers at info and above, as ``keystile serve`` writes them (the test's own
    HTTP client logs too, and it is not the server)."""
    captured = Captured()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("keystile")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield captured
    logger.removeHandler(handler)
    logger.setLevel(level)


def record(message: str, *args: Any, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    return logging.getLogger("keystile.test").makeRecord(
        "keystile.test", logging.WARNING, __file__, 1, message, args, exc_info, extra=extra
    )


def test_a_line_is_one_json_object_with_time_level_logger_message_and_extra_fields() -> None:
    line = json.loads(JsonFormatter().format(record("cache at %d%%", 90, key_id="key_1")))

    assert set(line) == {"ts", "level", "logger", "message", "key_id"}
    assert line["level"] == "warning"
    assert line["logger"] == "keystile.test"
    assert line["message"] == "cache at 90%"
    assert line["key_id"] == "key_1"
    assert line["ts"].endswith("Z")
    assert line["ts"][10] == "T"


def test_the_request_id_comes_from_the_record_or_else_from_the_request_being_served() -> None:
    formatter = JsonFormatter()
    token = REQUEST_ID.set("req_served")
    try:
        assert json.loads(formatter.format(record("x")))["request_id"] == "req_served"
        assert json.loads(formatter.format(record("x", request_id="req_given")))["request_id"] == "req_given"
    finally:
        REQUEST_ID.reset(token)
    assert "request_id" not in json.loads(formatter.format(record("x")))


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        text = JsonFormatter().format(record("failed", exc_info=sys.exc_info()))

    assert "\n" not in text
    line = json.loads(text)
    assert line["exc"].startswith("Traceback")
    assert "ValueError: boom" in line["exc"]


def test_fields_json_cannot_hold_are_written_as_their_repr() -> None:
    line = json.loads(JsonFormatter().format(record("x", where=object())))

    assert line["where"].startswith("<object object")


def test_the_serve_configuration_sends_keystile_and_granian_through_the_json_formatter() -> None:
    config = logging_config("warning")

    assert config["root"] == {"handlers": ["json"], "level": "WARNING"}
    assert config["loggers"]["_granian"]["handlers"] == ["json"]
    assert config["handlers"]["json"]["stream"] == "ext://sys.stderr"
    with pytest.raises(ValueError, match="log level"):
        logging_config("loud")


async def test_management_requests_get_an_access_line_with_their_request_id_and_root_key(
    client: httpx.AsyncClient, auth: dict[str, str], api: dict[str, Any], logs: Captured
) -> None:
    response = await client.get(f"/v1/apis/{api['id']}", headers=auth)
    assert response.status_code == 200

    (line,) = logs.access()
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["method"] == "GET"
    assert line["path"] == "/v1/apis/{api_id}"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["root_key_id"].startswith("rk_")
    assert line["level"] == "info"
    assert line["message"] == "GET /v1/apis/{api_id} 200"


async def test_a_request_id_sent_by_the_client_is_the_one_logged(
    client: httpx.AsyncClient, auth: dict[str, str], logs: Captured
) -> None:
    await client.get("/v1/apis", headers={**auth, "X-Request-Id": "trace-42"})

    (line,) = logs.access()
    assert line["request_id"] == "trace-42"


async def test_verifications_get_no_access_line(
    client: httpx.AsyncClient, auth: dict[str, str], api: dict[str, Any], logs: Captured
) -> None:
    for _ in range(3):
        response = await client.post("/v1/keys/verify", json={"key": keyformat.generate("ks")}, headers=auth)
        assert response.status_code == 200

    assert logs.access() == []


async def test_probes_and_scrapes_are_logged_at_debug_only(client: httpx.AsyncClient, logs: Captured) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200

    assert logs.access() == []


async def test_no_key_reaches_the_log_from_a_path_a_header_or_a_query_string(
    client: httpx.AsyncClient, root: Any, logs: Captured
) -> None:
    _, root_key = root
    leaked = keyformat.generate("ks")

    responses = [
        await client.get(f"/v1/keys/{leaked}", headers=bearer(root_key)),  # a key pasted where an id goes
        await client.get(f"/v1/nowhere/{leaked}", headers=bearer(root_key)),  # ... on a route that does not exist
        await client.get(f"/v1/apis?key={leaked}", headers=bearer(root_key)),
        await client.get("/v1/apis", headers=bearer(leaked)),  # a key sent as the root key
        await client.get("/v1/apis", headers={"X-Api-Key": leaked, **bearer(root_key)}),
        await client.post("/v1/keys/verify", json={"key": leaked}, headers=bearer(root_key)),
    ]

    assert [r.status_code for r in responses] == [404, 404, 400, 401, 200, 200]
    lines = logs.lines()
    assert len(logs.access()) == 5
    assert {line["request_id"] for line in logs.access()} == {r.headers["x-request-id"] for r in responses[:5]}
    assert [line["path"] for line in logs.access()] == ["/v1/keys/{key_id}", None, "/v1/apis", "/v1/apis", "/v1/apis"]
    assert lines
    assert leaked not in logs.text
    assert root_key not in logs.text

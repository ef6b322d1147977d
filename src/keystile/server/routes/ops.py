"""Operations and documentation routes, open without a root key: health, readiness, metrics, OpenAPI, docs.

``/metrics`` needs no root key either: Prometheus scrapes without credentials by default, Keystile listens on
127.0.0.1 unless told otherwise, and the metrics carry counts and API ids, never a key (see
``docs/operations.md`` for putting it behind a proxy when the port is exposed).
"""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

from keystile.operations import DOCS, HEALTHZ, METRICS, OPENAPI_JSON, READYZ
from keystile.schemas import Status
from keystile.server.routing import Call, Operation


async def healthz(call: Call) -> Response:
    return call.json(Status("ok"))


async def readyz(call: Call) -> Response:
    from keystile.observability.health import check_ready

    await check_ready(call.ks)
    return call.json(Status("ready"))


async def metrics(call: Call) -> Response:
    from keystile.observability.metrics import CONTENT_TYPE, render

    runtime = call.runtime
    return Response(render(lambda: runtime.keystile), media_type=CONTENT_TYPE)


async def openapi_json(call: Call) -> Response:
    return Response(call.runtime.reference.json(), media_type="application/json")


async def docs(call: Call) -> Response:
    return HTMLResponse(call.runtime.reference.html())


TAG = "Operations"
OPERATIONS = [
    Operation(HEALTHZ, healthz, "Liveness: the process answers", TAG, errors=()),
    Operation(
        READYZ,
        readyz,
        "Readiness: storage answers, and Redis when configured (503 problem when one does not)",
        TAG,
        errors=(503,),
    ),
    Operation(
        METRICS,
        metrics,
        "Prometheus metrics of this process (text format 0.0.4)",
        TAG,
        errors=(),
        description=(
            "Answers `text/plain; version=0.0.4` (the Prometheus text format): verifications by outcome and API, "
            "their latency, the key cache, verification events, rate-limit backends. No root key needed. "
            "See docs/operations.md."
        ),
    ),
    Operation(OPENAPI_JSON, openapi_json, "This OpenAPI 3.1 document", TAG, errors=()),
    Operation(DOCS, docs, "The API reference as an HTML page", TAG, errors=()),
]

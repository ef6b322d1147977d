"""Operations and documentation routes, open without a root key: health, readiness, OpenAPI, docs."""

from __future__ import annotations

from msgspec import Struct
from starlette.responses import HTMLResponse, Response

from keystile.server.routing import Call, Operation


class Status(Struct):
    status: str


async def healthz(call: Call) -> Response:
    return call.json(Status("ok"))


async def readyz(call: Call) -> Response:
    await call.ks.storage.ping()
    return call.json(Status("ready"))


async def openapi_json(call: Call) -> Response:
    from keystile.server.openapi import openapi_bytes

    return Response(openapi_bytes(), media_type="application/json")


async def docs(call: Call) -> Response:
    from keystile.server.docs import docs_html

    return HTMLResponse(docs_html())


TAG = "Operations"
OPERATIONS = [
    Operation("GET", "/healthz", healthz, "Liveness: the process answers", TAG, response=Status, errors=()),
    Operation(
        "GET",
        "/readyz",
        readyz,
        "Readiness: storage answers (503 problem when it does not)",
        TAG,
        response=Status,
        errors=(503,),
    ),
    Operation("GET", "/openapi.json", openapi_json, "This OpenAPI 3.1 document", TAG, response=dict, errors=()),
    Operation("GET", "/docs", docs, "The API reference as an HTML page", TAG, response=str, errors=()),
]

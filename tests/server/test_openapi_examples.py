"""The examples of ``/openapi.json`` and how ``/docs`` shows them and renders the descriptions (issue 9, step 6).

Every operation carries an example of its body and of its success answer, made from the same structs the server
decodes and encodes (``keystile.server.examples``); each is valid against its own schema, and the request examples
are accepted by the server, sent in an order where what one needs (an API, a role, an identity, a key) exists.
"""

from __future__ import annotations

import copy
import json
import re
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jsonschema_rs
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keystile.config import Settings
from keystile.server.docs import render
from keystile.server.openapi import build_document
from keystile.server.routes import OPERATIONS
from tests.conftest import MASTER_KEY

from .helpers import Headers
from .test_leaks import KEY_ID, pem, sign

Json = dict[str, Any]
SUCCESS = re.compile(r"^2\d\d$")


@pytest.fixture
def github() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def settings(database_url: str, tmp_path: Path, github: ec.EllipticCurvePrivateKey) -> Settings:
    """Leak reports on, so that the example report can be sent too (signed as GitHub would)."""
    keys = tmp_path / "github-keys.json"
    keys.write_text(json.dumps({"public_keys": [{"key_identifier": KEY_ID, "key": pem(github), "is_current": True}]}))
    return Settings(database_url=database_url, leaks_public_keys=keys, master_key=MASTER_KEY.hex())


async def _document(client: httpx.AsyncClient) -> Json:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: Json = response.json()
    return document


def _operations(document: Json) -> list[tuple[str, str, Json]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def _examples(media: Json) -> list[Any]:
    return [item["value"] for item in media.get("examples", {}).values()]


def _valid(document: Json, schema: Json, value: Any) -> list[str]:
    """What is wrong with ``value`` against ``schema`` (refs into ``document`` resolved, formats checked)."""
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "components": document["components"]}
    validator = jsonschema_rs.validator_for(root, validate_formats=True)
    return [f"{error.instance_path}: {error.message}" for error in validator.iter_errors(value)]


def _request_example(document: Json, method: str, path: str) -> Any:
    content = document["paths"][path][method]["requestBody"]["content"]
    return _examples(content["application/json"])[0]


async def test_every_operation_has_an_example_of_its_body_and_of_its_success_answer(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    checked = 0
    for method, path, op in _operations(document):
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            assert _examples(media), (method, path, media_type)
        for status, answer in op["responses"].items():
            if not SUCCESS.match(status):
                continue
            for media_type, media in answer.get("content", {}).items():
                assert _examples(media), (method, path, status, media_type)
                checked += 1
            if "content" not in answer and status != "204":
                # An answer without a body (forward auth) says what it means in headers: each has an example.
                assert answer["headers"], (method, path, status)
                for name, header in answer["headers"].items():
                    assert "example" in header, (method, path, status, name)
                    checked += 1
    assert checked > len(document["paths"])


async def test_every_example_is_valid_against_its_own_schema(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    wrong: dict[str, list[str]] = {}
    for method, path, op in _operations(document):
        places = [("request", m) for m in op.get("requestBody", {}).get("content", {}).values()]
        for status, answer in op["responses"].items():
            places += [(status, media) for media in answer.get("content", {}).values()]
        for place, media in places:
            for value in _examples(media):
                if errors := _valid(document, media["schema"], value):
                    wrong[f"{method} {path} {place}"] = errors
        for status, answer in op["responses"].items():
            for name, header in answer.get("headers", {}).items():
                if "example" in header and (errors := _valid(document, header["schema"], header["example"])):
                    wrong[f"{method} {path} {status} {name}"] = errors
    assert wrong == {}


def test_the_request_examples_decode_as_the_server_decodes_bodies() -> None:
    # msgspec checks the struct's bounds and patterns when it decodes, not when an example is built.
    paths = build_document(OPERATIONS)["paths"]
    for op in OPERATIONS:
        if op.body is None:
            continue
        content = paths[op.path][op.method.lower()]["requestBody"]["content"]
        for media in content.values():
            for value in _examples(media):
                msgspec.json.decode(msgspec.json.encode(value), type=op.body)


# The request examples in an order where each finds what it refers to: the API, the role the key example lists,
# the identity and key the patches change. Path parameters come from the answers before them.
SENT = [
    ("post", "/v1/apis"),
    ("patch", "/v1/apis/{api_id}"),
    ("post", "/v1/apis/{api_id}/roles"),
    ("post", "/v1/identities"),
    ("patch", "/v1/identities/{owner_id}"),
    ("post", "/v1/apis/{api_id}/keys"),
    ("post", "/v1/apis/{api_id}/keys/bulk"),
    ("post", "/v1/apis/{api_id}/keys/import"),
    ("patch", "/v1/keys/{key_id}"),
    ("post", "/v1/keys/{key_id}/credits"),
    ("post", "/v1/keys/verify"),
    ("post", "/v1/tokens"),
    ("post", "/v1/tokens/verify"),
    ("post", "/v1/keys/{key_id}/reroll"),
    ("post", "/v1/ratelimit"),
    ("post", "/v1/root-keys"),
    ("post", "/v1/webhooks"),
    ("patch", "/v1/webhooks/{webhook_id}"),
    ("post", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("post", "/v1/leaks"),
    ("post", "/oauth/token"),
    ("post", "/oauth/introspect"),
    ("post", "/v1/portal/sessions"),
]
FORM = "application/x-www-form-urlencoded"


def _members(value: Any) -> set[str]:
    """The members of an answer, or of the first item of a list answer (the schema checks the rest)."""
    if isinstance(value, list):
        return _members(value[0]) if value else set()
    assert isinstance(value, dict)
    return set(value)


async def test_the_request_examples_are_accepted_and_answered_as_the_answer_examples_show(
    client: httpx.AsyncClient, auth: Headers, github: ec.EllipticCurvePrivateKey
) -> None:
    document = await _document(client)
    with_body = {(method, path) for method, path, op in _operations(document) if "requestBody" in op}
    assert set(SENT) == with_body, "every operation with a body has its example sent here"

    params: dict[str, str] = {}
    for method, path in SENT:
        if path.startswith("/oauth/"):  # form bodies: the example, with the key and the token made above
            shown = _examples(document["paths"][path][method]["requestBody"]["content"][FORM])[0]
            if path == "/oauth/token":
                shown = {**shown, "client_id": params["key_id"], "client_secret": params["key"]}
            else:
                shown = {**shown, "token": params["access_token"]}
            body = urlencode(shown).encode()
            headers = {**auth, "Content-Type": FORM}
        else:
            shown = _request_example(document, method, path)
            if path == "/v1/portal/sessions":  # for the API made above
                shown = {**shown, "api_id": params["api_id"]}
            body = json.dumps(shown).encode()
            headers = sign(github, body) if path == "/v1/leaks" else {**auth, "Content-Type": "application/json"}
        if path in ("/v1/tokens", "/oauth/token"):  # the caller presents its own key, not a root key
            content_type = headers["Content-Type"]
            headers = {"Authorization": f"Bearer {params['key']}", "Content-Type": content_type}
            if path == "/oauth/token":
                del headers["Authorization"]
        answer = await client.request(method, path.format(**params), content=body, headers=headers)

        assert answer.status_code in (200, 201), (method, path, answer.text)
        documented = document["paths"][path][method]["responses"][str(answer.status_code)]["content"]
        [shown] = _examples(documented["application/json"])
        assert _members(answer.json()) == _members(shown), (method, path)
        if path == "/v1/apis":
            params["api_id"] = answer.json()["id"]
        elif path == "/v1/webhooks":
            params["webhook_id"] = answer.json()["id"]
        elif path == "/v1/identities":
            params["owner_id"] = answer.json()["owner_id"]
        elif path == "/oauth/token":
            params["access_token"] = answer.json()["access_token"]
        elif path == "/v1/apis/{api_id}/keys":
            params["key_id"], params["key"] = answer.json()["id"], answer.json()["key"]


def _shown_texts(document: Json) -> list[str]:
    """The Markdown that /docs shows: the document's description, each operation's summary and description and
    those of its parameters, answers and headers, and each schema's description and its fields'."""
    texts = [document["info"]["description"]]
    for _, _, op in _operations(document):
        texts += [op["summary"], op.get("description", "")]
        texts += [param.get("description", "") for param in op.get("parameters", [])]
        for answer in op["responses"].values():
            texts.append(answer["description"])
            texts += [header.get("description", "") for header in answer.get("headers", {}).values()]
    for schema in document["components"]["schemas"].values():
        texts.append(schema.get("description", ""))
        texts += [field.get("description", "") for field in schema.get("properties", {}).values()]
    return texts


async def test_docs_renders_the_markdown_of_descriptions(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    page = (await client.get("/docs")).text
    outside_examples = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)

    spans = {span for text in _shown_texts(document) for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", text)}
    assert "keys.write" in spans
    for span in spans:
        assert f"<code>{escape(span, quote=False)}</code>" in page, span
    assert not re.search(r"`[^`<>\n]+`", outside_examples), "a backtick pair left as it was"
    assert "<p>Needs the root-key permission <code>keys.write</code>." in page


async def test_docs_shows_the_example_of_each_body_and_answer(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text

    section = page[page.index('id="op-create_key"') :]
    section = section[: section.index("</section>")]
    assert "Example body:" in section
    assert "Example answer (201):" in section
    assert escape('"owner_id": "alice"') in section


async def test_docs_escapes_html_in_descriptions_and_makes_no_unsafe_links(client: httpx.AsyncClient) -> None:
    document = copy.deepcopy(await _document(client))
    hostile = (
        'Hi <script>alert(1)</script> <img src=x onerror="alert(2)"> [click](javascript:alert(3)) '
        "[ok](https://keystile.dev/docs)\n\n- one `a<b`\n- two"
    )
    document["paths"]["/v1/apis"]["post"]["description"] = hostile
    document["components"]["schemas"]["ApiCreate"]["description"] = hostile

    page = render(document)

    assert "<script" not in page
    assert "<img" not in page
    assert "javascript:" not in page.lower().replace("javascript:alert(3)", "")  # only as escaped text, if at all
    assert 'href="javascript' not in page.lower()
    assert '<a href="https://keystile.dev/docs">ok</a>' in page
    assert "<li>one <code>a&lt;b</code></li>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

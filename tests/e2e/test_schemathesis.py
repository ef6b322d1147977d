"""Schemathesis against ``/openapi.json`` of a real ``keystile serve``: no 5xx, and every answer is what the
document says (status documented, content type, headers, body schema).

Bounded and repeatable: a fixed number of examples per operation, a fixed seed, one worker, no example database;
the phases are the document's examples, the coverage phase (boundary values of every constraint), fuzzing, and
stateful runs along the document's links (create an API, then a key in it, then show, patch, reroll or revoke
that key...). The fuzzer uses the first root key, which it must not revoke: see ``schemathesis_hooks.py``.

Schema-valid requests that the server refuses (schemathesis's ``positive_data_acceptance``) are not checked
here: a few rules cannot be said in JSON Schema (``since`` before ``until``, a role that must exist, the
permission query grammar), and Keystile refuses ``5.0`` where the document says integer, which JSON Schema
cannot tell from ``5``. ``test_openapi.py`` holds the constraints the document does state to the validation.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from .schemathesis_hooks import OWN_ROOT_KEY_ID
from .server import BIN, REPO, Server, serve

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25
SEED = 20261202
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def _own_root_key_id(server: Server, key: str) -> str:
    answer = httpx.get(f"{server.url}/v1/root-keys", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    [own] = answer.json()["items"]
    return str(own["id"])


def test_every_answer_to_generated_requests_conforms_to_the_document_and_none_is_a_5xx(tmp_path: Path) -> None:
    server = serve(tmp_path)
    try:
        key = server.root_key()
        own_id = _own_root_key_id(server, key)
        run = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                ",".join(CHECKS),
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
                "--output-sanitize",
                "true",
            ],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
                OWN_ROOT_KEY_ID: own_id,
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # The root key survived the run: every request was made with it (a revoked key would turn the rest
        # of the run into documented, and so conforming, 401s).
        still = httpx.get(f"{server.url}/v1/apis", headers={"Authorization": f"Bearer {key}"})
    finally:
        server.stop()

    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.output()}"
    assert "Tested: " in run.stdout
    assert still.status_code == 200, still.text
    assert "Traceback" not in server.stderr()

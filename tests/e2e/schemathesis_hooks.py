"""Schemathesis hooks of the fuzz suite (``test_schemathesis.py``), loaded by ``schemathesis run`` through
``SCHEMATHESIS_HOOKS``.

The fuzzer authenticates with the server's first root key (permission ``*``). It may create and revoke other
root keys, but ``POST /v1/root-keys/{id}/revoke`` with the id of its own key would leave every later request
a 401 (documented, so conforming, and the rest of the run would test nothing). Such a call is sent for an id of
the same shape that does not exist instead: a 404, like any other unknown id.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

OWN_ROOT_KEY_ID = "KEYSTILE_FUZZ_ROOT_KEY_ID"
"""The environment variable holding the id (``rk_...``) of the root key the fuzzer uses."""
NOBODY = "rk_" + "0" * 22


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    own = os.environ[OWN_ROOT_KEY_ID]
    if case.operation.path == "/v1/root-keys/{root_key_id}/revoke" and case.path_parameters.get("root_key_id") == own:
        case.path_parameters["root_key_id"] = NOBODY

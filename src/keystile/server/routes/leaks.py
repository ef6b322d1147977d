"""``POST /v1/leaks`` (SPEC S3): leak reports of GitHub's secret scanning partner program.

Not authenticated with a root key: GitHub signs the body instead (:mod:`keystile.leaks.partner`). Nothing is
decoded, looked up or revoked before the signature has been checked. Every reported token that is a key of this
deployment (root keys included) is revoked and audited as ``key.leak_reported`` by actor ``github``, with the
report's ``type``, ``url`` and ``source`` but never the token; the answer labels each token for GitHub's
feedback. The ``key.leaked`` webhook of SPEC R5 is not fired: webhooks do not exist yet.
"""

from __future__ import annotations

from starlette.responses import Response

from keystile.core import keys as keyformat
from keystile.core.permissions import Grants
from keystile.http.asgi import header, read_body
from keystile.leaks.partner import KEY_ID_HEADER, SIGNATURE_HEADER, check_signature, load_public_keys, token_hash
from keystile.operations import REPORT_LEAKS
from keystile.schemas import LeakLabel, LeakReport, decode
from keystile.server.auth import actor_for
from keystile.server.routing import Call, Operation
from keystile.service import Principal

# Holds no permission: a signed report may revoke the keys it names (LeakService.report checks nothing else)
# and do nothing more.
GITHUB = Principal("github", Grants(()))


def _clean(text: str) -> str:
    # U+0000 cannot be stored by PostgreSQL; the audit entry must not fail for it.
    return text.replace("\x00", "\ufffd")


async def report_leaks(call: Call) -> Response:
    headers = call.request.scope["headers"]
    body = await read_body(call.request.receive, call.runtime.max_body)
    keys = load_public_keys(call.runtime.settings.leaks_public_keys)
    check_signature(keys, header(headers, KEY_ID_HEADER), header(headers, SIGNATURE_HEADER), body)
    reports = decode(body, list[LeakReport])
    actor = actor_for(GITHUB, call.request.scope)
    labels = []
    for report in reports:
        label = "false_positive"
        if len(report.token) <= keyformat.MAX_KEY_LENGTH:
            details = {
                "reported_by": "github",
                "type": _clean(report.type),
                "url": _clean(report.url),
                "source": _clean(report.source),
            }
            found = await call.ks.leaks.report(actor, keyformat.digest(report.token), details)
            if found.key is not None:
                label = "true_positive"
        labels.append(LeakLabel(token_hash(report.token), report.type, label))
    return call.json(labels)


OPERATIONS = [
    Operation(
        REPORT_LEAKS,
        report_leaks,
        "Report leaked keys (GitHub secret scanning partner program): revokes the keys of this deployment",
        "Leaks",
        errors=(400, 403, 404),
        description=(
            "Signed by GitHub instead of a root key: `Github-Public-Key-Identifier` names one of the public keys "
            "in `KEYSTILE_LEAKS_PUBLIC_KEYS`, `Github-Public-Key-Signature` is the base64 ECDSA P-256 SHA-256 "
            "signature of the raw body. A missing, unknown or wrong signature is 403 (`missing_signature`, "
            "`unknown_signing_key`, `invalid_signature`) and revokes nothing; without configured public keys the "
            "route is 404 (`leaks_not_configured`). Each reported token that is a key of this deployment is "
            "revoked (audited as `key.leak_reported`, actor `github`) and labelled `true_positive`; others "
            "`false_positive`. Tokens are named by their SHA-256 (`token_hash`), never repeated."
        ),
    ),
]

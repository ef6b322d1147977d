"""``keystile keys verify`` (SPEC V1, X1): exit 0 for VALID, 1 for any other code, 2 for a usage error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from keystile.cli._errors import NO
from keystile.cli._output import emit_json, json_option
from keystile.cli._parse import read_key
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.schemas import VerifyResponse
    from keystile.service import Keystile


NOT_ISSUED = "this is not a key Keystile issued (its checksum does not match: mistyped or truncated?)"


def _checksum_fails(key: str) -> bool:
    """Whether ``key`` is in Keystile's shape with check characters that do not match the rest.

    Said only here, to the operator at the shell: the HTTP answer stays a bare NOT_FOUND (it tells a caller
    nothing), and a lookalike of a prefix whose keys were imported by digest was still looked up, and not found.
    """
    from keystile.core import keys as keyformat

    parsed = keyformat.parse(key)
    return parsed is not None and not keyformat.has_valid_checksum(parsed)


@click.command("verify")
@click.argument("key")
@click.option("--api-id", help="Accept only a key of this API (others are NOT_FOUND).")
@click.option("--permissions", metavar="QUERY", help="A permission query, e.g. 'docs.read AND (docs.write OR admin)'.")
@click.option("--ip", help="The client's IP address, checked against allowlists.")
@json_option
def verify(key: str, api_id: str | None, permissions: str | None, ip: str | None, as_json: bool) -> None:
    """Verify KEY as an API would (- reads it from stdin).

    Reading the key from stdin keeps it out of shell history. Prints the code (VALID, NOT_FOUND, REVOKED, DISABLED,
    EXPIRED, FORBIDDEN, INSUFFICIENT_PERMISSIONS, RATE_LIMITED, USAGE_EXCEEDED) and the key's id. Like a
    verification over HTTP, a VALID one spends the key's credits and rate limits. Exit code 0 for VALID, 1 for any
    other code, 2 for a usage error.
    """
    from keystile.schemas import VerifyRequest, convert
    from keystile.service import CLI_ACTOR

    body: dict[str, Any] = {"key": read_key(key)}
    for name, value in (("api_id", api_id), ("permissions", permissions), ("ip", ip)):
        if value is not None:
            body[name] = value
    request = convert(body, VerifyRequest)

    async def work(ks: Keystile) -> VerifyResponse:
        from keystile.http.verify import check_of, response_of

        return response_of(await ks.verification.verify(CLI_ACTOR.principal, check_of(request)))

    answer = run(work)
    if as_json:
        emit_json(answer)
    elif answer.key_id is None:
        click.echo(answer.code)
    else:
        click.echo(f"{answer.code} {answer.key_id} (api {answer.api_id})")
    if answer.code == "NOT_FOUND" and _checksum_fails(request.key):
        click.echo(NOT_ISSUED, err=True)
    if not answer.valid:
        click.get_current_context().exit(NO)

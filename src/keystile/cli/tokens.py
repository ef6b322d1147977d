"""``keystile tokens issue|verify|rotate|keys`` (SPEC T1, T2): API tokens and the keys that sign them.
See docs/tokens.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from keystile.cli._errors import NO
from keystile.cli._output import emit_json, json_option, say, table
from keystile.cli._parse import read_key
from keystile.cli._runtime import run

if TYPE_CHECKING:
    from keystile.service import Keystile
    from keystile.service.tokens import SigningKeyState, TokenCheck, TokenIssue, TokenRotation


@click.group("tokens")
def tokens() -> None:
    """Issue and check API tokens; rotate the keys that sign them."""


@tokens.command("issue")
@click.argument("key", default="-")
@click.option("--ttl", "ttl_s", type=click.IntRange(1, 3600), default=900, show_default=True, help="Seconds.")
@click.option("--permission", "permissions", multiple=True, help="Narrow the scope to this permission (repeatable).")
@json_option
def issue(key: str, ttl_s: int, permissions: tuple[str, ...], as_json: bool) -> None:
    """Issue a token for KEY (default -: read the key from stdin, keeping it out of shell history).

    Issuing verifies the key, spending its limits and credits. Prints the token; exit code 1 when the key does
    not verify (the code is printed on stderr).
    """
    from keystile.core.verify import KeyCheck

    plain = read_key(key)

    async def work(ks: Keystile) -> TokenIssue:
        return await ks.tokens.issue(KeyCheck(plain, tags=("cli",)), ttl_s=ttl_s, permissions=list(permissions) or None)

    done = run(work)
    token = done.token
    if token is None:
        code = done.result.code
        if as_json:
            emit_json({"code": code})
        else:
            click.echo(f"no token: {code}", err=True)
        click.get_current_context().exit(NO)
    if as_json:
        emit_json(
            {
                "token": token.token,
                "token_type": "Bearer",
                "expires_in": token.expires_in,
                "scope": " ".join(token.scope),
                "kid": token.kid,
            }
        )
    else:
        click.echo(token.token)


@tokens.command("verify")
@click.argument("token")
@json_option
def verify(token: str, as_json: bool) -> None:
    """Check TOKEN (- reads it from stdin): its signature, times and issuer, and that its key is still valid.

    Prints the code (VALID, EXPIRED, REVOKED, DISABLED, NOT_FOUND) and the key's id; exit code 0 for VALID,
    1 otherwise. Spends nothing.
    """
    from keystile.service import CLI_ACTOR

    text = read_key(token)

    async def work(ks: Keystile) -> TokenCheck:
        return await ks.tokens.verify(CLI_ACTOR.principal, text)

    checked = run(work)
    claims = dict(checked.claims or {})
    if as_json:
        emit_json({"valid": checked.valid, "code": checked.code, "kid": checked.kid, **claims})
    elif claims:
        click.echo(f"{checked.code} {claims.get('key_id')} (api {claims.get('api_id')}, scope {claims.get('scope')!r})")
    else:
        click.echo(checked.code)
    if not checked.valid:
        click.get_current_context().exit(NO)


@tokens.command("rotate")
@json_option
def rotate(as_json: bool) -> None:
    """Add a new signing key and sign new tokens with it from now on.

    The previous keys' public keys stay in /.well-known/jwks.json until every token they signed has expired
    (an hour, the longest a token lives), then are dropped. Needs the master key. Audited as signing_key.rotate.
    """
    from keystile.service import CLI_ACTOR

    async def work(ks: Keystile) -> TokenRotation:
        return await ks.tokens.rotate(CLI_ACTOR)

    done = run(work)
    if as_json:
        emit_json({"kid": done.kid, "retired": list(done.retired), "published_until": when_ms(done.published_until)})
        return
    say(f"New tokens are signed with {done.kid}.")
    if done.retired:
        say(f"Retired {', '.join(done.retired)}: published until {when_ms(done.published_until)}.")


@tokens.command("keys")
@json_option
def keys(as_json: bool) -> None:
    """List the signing keys: current (signs new tokens), retired (still published) or dropped."""

    async def work(ks: Keystile) -> list[SigningKeyState]:
        return await ks.tokens.signing_keys()

    states = run(work)
    rows = [
        {
            "kid": s.key.kid,
            "state": s.state,
            "created_at": when_ms(s.key.created_at),
            "retired_at": when_ms(s.key.retired_at),
            "published_until": when_ms(s.key.not_after),
        }
        for s in states
    ]
    if as_json:
        emit_json(rows)
        return
    table(
        ["kid", "state", "created", "retired", "published until"],
        [
            [r["kid"] or "", r["state"] or "", r["created_at"] or "", r["retired_at"] or "", r["published_until"] or ""]
            for r in rows
        ],
        empty="No signing key yet: one is made when the first token is issued.",
    )


def when_ms(ms: int | None) -> str | None:
    from keystile.core.timefmt import to_rfc3339

    return to_rfc3339(ms)

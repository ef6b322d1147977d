"""Exit codes, and the one place where Keystile's errors become them.

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      success
1      the answer is no (``keys verify`` of a key that is not VALID), or an unexpected error
2      usage error or invalid input (bad flag, bad value, a setting that does not parse)
3      not found (no such API, key or root key)
4      conflict (the object or file already exists, or clashes with the current state)
5      storage unavailable, a schema that needs ``keystile init`` / ``keystile migrate``, or no usable master key
6      ``serve`` / ``proxy``: the port is in use (by another program, or another keystile serve)
7      ``serve`` / ``proxy``: cannot listen on that address (not one of this machine's, or not permitted)
8      ``serve`` / ``proxy``: the TLS certificate or key cannot be used
=====  ==========================================================================================
"""

from __future__ import annotations

from typing import IO, Any

import click

from keystile.errors import (
    Conflict,
    InvalidInput,
    KeystileError,
    MasterKeyUnavailable,
    NotFound,
    StorageError,
    TooLarge,
)

OK = 0
NO = 1
INTERNAL = 1
USAGE = 2
NOT_FOUND = 3
CONFLICT = 4
STORAGE = 5
PORT_IN_USE = 6
CANNOT_LISTEN = 7
BAD_TLS = 8

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  the answer is no (keys verify of a key that is not VALID), or an unexpected error
  2  usage error or invalid input
  3  not found
  4  conflict (already exists)
  5  storage unavailable, or migrations pending (run keystile init or keystile migrate)
  6  serve, proxy: the port is in use
  7  serve, proxy: cannot listen on that address
  8  serve, proxy: the TLS certificate or key cannot be used"""

_META = "keystile.fields"
# JSON pointers of request fields, as the flags that set them, so that a message points at what was typed.
_FLAGS = {
    "name": "--name",
    "owner_id": "--owner-id",
    "meta": "--meta",
    "permissions": "--permission",
    "roles": "--role",
    "expires_at": "--expires-at",
    "credits": "--credits/--refill-*",
    "ratelimits": "--ratelimit",
    "ip_allowlist": "--ip",
    "prefix": "--prefix",
    "max_key_age_days": "--max-key-age-days",
    "expire_stale_after_days": "--expire-stale-after-days",
    "recoverable": "--recoverable",
    "api_id": "--api-id",
    "ip": "--ip",
    "limit": "--limit",
    "cursor": "--cursor",
    "key": "KEY",
}


class CliError(click.ClickException):
    """An error shown as ``Error: <detail> [<code>]`` on stderr; ends the process with exit code 1 (unexpected).

    The subclasses below carry the other exit codes.
    """

    exit_code = INTERNAL

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.code = code

    def format_message(self) -> str:
        return f"{self.message} [{self.code}]" if self.code else self.message

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", file=file, err=file is None)


class BadInput(CliError):
    exit_code = USAGE


class Missing(CliError):
    exit_code = NOT_FOUND


class Clash(CliError):
    exit_code = CONFLICT


class Unavailable(CliError):
    exit_code = STORAGE


class PortInUse(CliError):
    exit_code = PORT_IN_USE


class CannotListen(CliError):
    exit_code = CANNOT_LISTEN


class BadTls(CliError):
    exit_code = BAD_TLS


def error_class(error: KeystileError) -> type[CliError]:
    """The CLI error (and so the exit code) for one of Keystile's errors."""
    if isinstance(error, InvalidInput | TooLarge):
        return BadInput
    if isinstance(error, NotFound):
        return Missing
    if isinstance(error, Conflict):
        return Clash
    if isinstance(error, StorageError | MasterKeyUnavailable):
        return Unavailable
    return CliError


def name_fields(**names: str) -> None:
    """Say which arguments of the running command carry which body fields, where they are not the usual flags
    (``apis create NAME``), for error messages."""
    click.get_current_context().meta[_META] = names


def from_keystile(error: KeystileError, ctx: click.Context | None = None) -> CliError:
    """A :class:`CliError` for one of Keystile's errors, naming the flag behind a bad field where it can."""
    detail = error.detail
    field = error.extra.get("field")
    if isinstance(field, str) and field:
        top = field.split("/")[1] if field.startswith("/") else field
        flag = (ctx.meta.get(_META, {}) if ctx is not None else {}).get(top) or _FLAGS.get(top)
        if flag:
            detail = f"{detail} ({flag})"
    position = error.extra.get("position")
    if isinstance(position, int):
        detail = f"{detail} (at character {position})"
    return error_class(error)(detail, code=error.code)

"""What ``keystile serve`` and ``keystile proxy`` check before they set anything up or say that they listen.

granian (on Linux) binds each worker's socket with ``SO_REUSEPORT``, so a second server started on a busy port
would share it with the first, and the kernel would hand each connection to either. Before granian starts, a
socket is bound here to the same address *without* ``SO_REUSEPORT``: that fails on a port any other socket
listens on, reuse-port or not. It is closed again before granian binds, so a program that takes the port in
those few milliseconds still slips through; granian's own failure is then reported in the same words
(:func:`listen_failure`).

Each failure is one line naming the setting to change, with an exit code of its own (see ``_errors``).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from keystile.cli._errors import BadInput, BadTls, CannotListen, CliError, PortInUse
from keystile.config import Settings

_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@dataclass(frozen=True, slots=True)
class AddressSettings:
    """The settings a user changes to move the server, as messages name them."""

    host: str
    port: str


SERVE_ADDRESS = AddressSettings("--host or KEYSTILE_HOST", "--port or KEYSTILE_PORT")


def check_address(settings: Settings, names: AddressSettings = SERVE_ADDRESS) -> None:
    """Raise a :class:`CliError` unless a server could listen on ``settings.host:settings.port`` right now."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(settings.host).version == 6 else socket.AF_INET
    except ValueError:
        raise BadInput(
            f"{settings.host!r} is not an IP address; set {names.host} to one, such as 127.0.0.1 (this machine "
            "only) or 0.0.0.0 (every interface)",
            code="invalid_setting",
        ) from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As granian does: a port left in TIME_WAIT by a server that has just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise listen_failure(exc.errno, settings, names) from None


def listen_failure(number: int | None, settings: Settings, names: AddressSettings) -> CliError:
    """The error for a socket that could not be bound to the configured address (``number`` is its errno)."""
    where = f"{settings.host}:{settings.port}"
    if number == errno.EADDRINUSE:
        return PortInUse(
            f"port {settings.port} on {settings.host} is in use (by another program, or another keystile serve); "
            f"stop it or choose another port with {names.port}",
            code="port_in_use",
        )
    if number == errno.EADDRNOTAVAIL:
        return CannotListen(
            f"cannot listen on {where}: this machine has no address {settings.host}; set {names.host} to one of "
            "its addresses, or 0.0.0.0 for every interface",
            code="address_unavailable",
        )
    if number == errno.EACCES:
        return CannotListen(
            f"cannot listen on {where}: this user may not open port {settings.port} (ports below 1024 need "
            f"privileges); choose another with {names.port}",
            code="port_not_permitted",
        )
    reason = f"{errno.errorcode.get(number, 'error')}" if number is not None else "unknown error"
    return CannotListen(
        f"cannot listen on {where} ({reason}); check {names.host} and {names.port}", code="cannot_listen"
    )


def os_error_of(exc: RuntimeError) -> int | None:
    """The errno of a RuntimeError raised by granian's Rust code (``… (os error 98)``), if it carries one."""
    found = _OS_ERROR.search(str(exc))
    return int(found[1]) if found else None


def check_tls(cert: Path, key: Path) -> None:
    """Raise :class:`BadTls` unless ``cert`` holds a PEM certificate and ``key`` its unencrypted PEM private key
    (granian loads them the same way, but only once the server starts)."""
    cert_setting, key_setting = "--tls-cert or KEYSTILE_TLS_CERT", "--tls-key or KEYSTILE_TLS_KEY"
    _readable(cert, cert_setting)
    _readable(key, key_setting)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=str(cert))
    except ssl.SSLError:
        _tls_failure(f"{cert} holds no PEM certificate; fix {cert_setting}")
    try:
        # A password callback, so that an encrypted key fails here instead of prompting on the terminal.
        context.load_cert_chain(str(cert), str(key), password=_no_password)
    except (ssl.SSLError, _Encrypted):
        _tls_failure(f"{key} is not an unencrypted PEM private key of the certificate in {cert}; fix {key_setting}")


class _Encrypted(Exception):
    pass


def _no_password() -> str:
    raise _Encrypted


def _readable(path: Path, setting: str) -> None:
    try:
        with path.open("rb"):
            pass
    except IsADirectoryError:
        _tls_failure(f"{path} is a directory, not a PEM file; fix {setting}")
    except OSError as exc:
        _tls_failure(f"cannot read {path}: {exc.strerror}; fix {setting}")


def _tls_failure(detail: str) -> NoReturn:
    raise BadTls(detail, code="invalid_tls_file")

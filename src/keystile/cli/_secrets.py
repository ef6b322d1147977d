"""Files that hold a secret: the master key and a root key written with ``--root-key-file``."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import stat
from pathlib import Path

from keystile.cli._errors import BadInput, Clash

MASTER_KEY_BYTES = 32


def _create(path: Path) -> int:
    """A new file of mode 0600, opened for writing; refuses one that exists (exit 4)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Clash(f"{path} already exists; choose a new file", code="file_exists") from None
    except OSError as exc:
        raise BadInput(f"cannot create {path}: {exc.strerror}", code="invalid_path") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


class SecretFile:
    """A new 0600 file, created *before* the secret it will hold, so that a clash is found before the secret
    exists; :meth:`discard` removes it when the secret is not made after all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = _create(path)

    def write(self, text: str) -> None:
        assert self._fd is not None
        try:
            os.write(self._fd, text.encode())
        finally:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ensure_private_dir(path: Path) -> bool:
    """Create the directory ``path`` with mode 0700 whatever the umask, unless it exists; True if created.

    An existing directory keeps its mode (it may be the user's): :func:`loosely_guarded` finds one to warn about.
    """
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return False
    path.chmod(0o700)
    return True


def ensure_master_key(path: Path) -> bool:
    """Create the master key file (32 random bytes, base64, mode 0600) unless it exists; True if created."""
    if path.exists():
        return False
    ensure_private_dir(path.parent)
    key = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()
    SecretFile(path).write(key + "\n")
    return True


def loosely_guarded(path: Path) -> bool:
    """Whether a secret file (or the directory of one) is open to users other than its owner."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))

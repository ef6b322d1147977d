"""The Lua scripts shipped in ``keystile/redis/lua/`` (package data), called by their SHA-1 (``EVALSHA``).

Each script's last argument is the call's deadline on Redis's clock, which the connection adds as it writes the
call (see :mod:`keystile.redis.connection`): a script does nothing past it and answers ``LATE``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources

from keystile.redis.wire import Arg, command, evalsha


class Script:
    """The script ``lua/<name>.lua``: its source, its SHA-1, and the ``SCRIPT LOAD`` that teaches it to a Redis
    that does not know it (a restarted or flushed one)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files("keystile.redis.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self.sha_bytes = self.sha.encode()
        self.load_command = command(b"SCRIPT", b"LOAD", self.source.encode())


def pack(script: Script, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """A call of ``script`` as a RESP command, but its deadline (see the module docstring)."""
    return evalsha(script.sha_bytes, keys, args)

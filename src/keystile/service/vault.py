"""The master keys and data keys of recoverable keys (SPEC K3): what seals a key's plain text and opens it again.

:class:`MasterKeys` reads the master key (and, during a rotation, the previous one) from the settings: a value
(``KEYSTILE_MASTER_KEY``) or a file (``KEYSTILE_MASTER_KEY_FILE``). A missing, unreadable or malformed master key
is not fatal: the server starts and verifies keys; only sealing and opening recoverable keys fail, with
:class:`~keystile.errors.MasterKeyUnavailable` (503). Files are read again when they change on disk, so that a
server picks up a rotated master key without a restart.

:class:`Vault` keeps the data keys this process has opened. New recoverable keys are sealed under the newest data
key wrapped by the current master key; one is made when there is none. It refuses to start a data key under a
master key that does not open the stored ones (a wrong master key, or a rotation this process has not picked
up yet), rather than split the deployment between two master keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.core.ids import new_id
from keystile.core.models import DataKey, Key, KeySecret
from keystile.errors import Conflict, InvalidInput, MasterKeyUnavailable
from keystile.service import sealing
from keystile.service.authz import Actor
from keystile.service.context import Context

log = logging.getLogger("keystile.recovery")

_WRONG_MASTER = (
    "recoverable keys are unavailable: the master key does not open the stored data keys (a wrong master key, or a"
    " rotation this server has not picked up)"
)
_UNREADABLE = "the stored secret of this key does not open: it was changed, or belongs to another key"


@dataclass(frozen=True, slots=True)
class MasterSource:
    """Where one master key comes from: a value (``name`` is its variable) or a file."""

    name: str
    value: str | None = None
    path: Path | None = None


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def read_master_key_file(path: Path) -> bytes:
    """The master key in a file (base64 or hex); raises InvalidInput naming the file, never quoting it."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InvalidInput(f"there is no master key file at {path}", code="invalid_master_key") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a master key file"
        raise InvalidInput(f"cannot read {path}: {reason}", code="invalid_master_key") from None
    return sealing.parse_master_key(text, str(path))


class MasterKeys:
    """The current master key and those still accepted (the previous one, during a rotation), by id."""

    def __init__(self, current: MasterSource | None, previous: Sequence[MasterSource] = ()) -> None:
        self._sources = [current, *previous]
        self._signatures: list[tuple[int, int, int] | None] = []
        self.current_id: str | None = None
        self.problem: str | None = "no master key is configured"
        """Why there is no current master key (never quoting one); ``None`` when there is."""
        self._by_id: dict[str, bytes] = {}
        self._load()

    @classmethod
    def from_settings(cls, settings: Settings) -> MasterKeys:
        current = (
            MasterSource("KEYSTILE_MASTER_KEY", value=settings.master_key)
            if settings.master_key
            else MasterSource("KEYSTILE_MASTER_KEY_FILE", path=settings.master_key_file)
        )
        previous = []
        if settings.master_key_previous:
            previous.append(MasterSource("KEYSTILE_MASTER_KEY_PREVIOUS", value=settings.master_key_previous))
        if settings.master_key_previous_file is not None:
            previous.append(MasterSource("KEYSTILE_MASTER_KEY_PREVIOUS_FILE", path=settings.master_key_previous_file))
        return cls(current, previous)

    @classmethod
    def of(cls, *masters: bytes) -> MasterKeys:
        """A keyring of the given keys, the first current (for tests and one-off tools)."""
        texts = [MasterSource(f"master key {n}", value=m.hex()) for n, m in enumerate(masters)]
        return cls(texts[0] if texts else None, texts[1:])

    def _read(self, source: MasterSource) -> bytes:
        """Raises InvalidInput with a message that names the source, never its content."""
        if source.path is None:
            return sealing.parse_master_key(source.value or "", source.name)
        return read_master_key_file(source.path)

    def _load(self) -> None:
        self._signatures = [_signature(s.path) if s and s.path else None for s in self._sources]
        self._by_id = {}
        self.current_id = None
        self.problem = "no master key is configured"
        for index, source in enumerate(self._sources):
            if source is None:
                continue
            try:
                master = self._read(source)
            except InvalidInput as exc:
                if index == 0:
                    self.problem = exc.detail
                continue
            master_id = sealing.master_key_id(master)
            self._by_id.setdefault(master_id, master)
            if index == 0:
                self.current_id, self.problem = master_id, None

    def refresh(self) -> bool:
        """Read the files again if any changed on disk (a rotation); True when something changed."""
        now = [_signature(s.path) if s and s.path else None for s in self._sources]
        if now == self._signatures:
            return False
        before = (self.current_id, sorted(self._by_id))
        self._load()
        return (self.current_id, sorted(self._by_id)) != before

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def get(self, master_id: str) -> bytes | None:
        return self._by_id.get(master_id)

    def current(self) -> tuple[str, bytes]:
        """The current master key and its id; raises MasterKeyUnavailable."""
        if self.current_id is None:
            raise MasterKeyUnavailable(f"recoverable keys are unavailable: {self.problem}")
        return self.current_id, self._by_id[self.current_id]


@dataclass(frozen=True, slots=True)
class Sealer:
    """The data key that new recoverable keys are sealed under."""

    data_key_id: str
    data_key: bytes

    def seal(self, key: Key, plain: str) -> KeySecret:
        nonce, ciphertext = sealing.seal_key(self.data_key, key.id, key.api_id, plain)
        return KeySecret(key.id, self.data_key_id, nonce, ciphertext)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a master key rotation did: data keys re-wrapped, already under the new key, and left as they were
    because no master key at hand opens them (their master key ids)."""

    master_id: str
    rewrapped: int
    already: int
    unopened: tuple[str, ...]


class Vault:
    """Seals new recoverable keys and opens stored ones; rotates the master key that wraps their data keys."""

    def __init__(self, ctx: Context, masters: MasterKeys) -> None:
        self._ctx = ctx
        self.masters = masters
        self._opened: dict[str, bytes] = {}
        self._sealer: Sealer | None = None
        self._lock = asyncio.Lock()
        self._logged: set[str] = set()

    def _unavailable(self, detail: str) -> MasterKeyUnavailable:
        """The error, logged once per reason per process (the reason never holds a key)."""
        if detail not in self._logged:
            self._logged.add(detail)
            log.warning("recoverable keys are unavailable", extra={"reason": detail})
        return MasterKeyUnavailable(detail)

    async def check(self) -> str | None:
        """Why recoverable keys cannot be used now, or ``None``; for a server's start. Logged once: as a warning
        when data keys are stored (recoverable keys are in use), else for information only."""
        stored = list(await self._ctx.storage.count_data_keys())
        if self.masters.current_id is None:
            detail = f"recoverable keys are unavailable: {self.masters.problem}"
            if stored:
                return self._unavailable(detail).detail
            log.info("recoverable keys are unavailable until a master key is configured", extra={"reason": detail})
            return detail
        if await self._foreign_masters():
            return self._unavailable(_WRONG_MASTER).detail
        return None

    async def _foreign_masters(self) -> list[str]:
        """Master key ids of stored data keys that no master key at hand opens (after reading the files again)."""
        stored = list(await self._ctx.storage.count_data_keys())
        foreign = [m for m in stored if m not in self.masters.ids]
        if foreign and self.masters.refresh():
            foreign = [m for m in stored if m not in self.masters.ids]
        return foreign

    # -- sealing --------------------------------------------------------------------------------------------

    async def sealer(self) -> Sealer:
        """The data key to seal new recoverable keys under; raises MasterKeyUnavailable."""
        sealer = self._sealer
        if sealer is not None:
            return sealer
        async with self._lock:
            if self._sealer is not None:
                return self._sealer
            if self.masters.current_id is None:
                self.masters.refresh()
            try:
                master_id, master = self.masters.current()
            except MasterKeyUnavailable as exc:
                raise self._unavailable(exc.detail) from None
            if await self._foreign_masters():
                raise self._unavailable(_WRONG_MASTER)
            master_id, master = self.masters.current()
            found = await self._ctx.storage.newest_data_key(master_id)
            if found is not None:
                sealer = Sealer(found.id, await self.data_key(found.id))
            else:
                sealer = await self._new_data_key(master_id, master)
            self._sealer = sealer
            return sealer

    async def _new_data_key(self, master_id: str, master: bytes) -> Sealer:
        now = self._ctx.now()
        data_key_id = new_id("dk", now)
        data_key = sealing.new_data_key()
        wrapped = sealing.wrap_data_key(master, data_key_id, data_key)
        async with self._ctx.storage.transaction() as tx:
            await tx.insert_data_key(DataKey(data_key_id, master_id, wrapped, now, now))
        self._opened[data_key_id] = data_key
        return Sealer(data_key_id, data_key)

    # -- opening --------------------------------------------------------------------------------------------

    async def data_key(self, data_key_id: str) -> bytes:
        """A data key, opened with the master key that wrapped it; raises MasterKeyUnavailable or Conflict."""
        opened = self._opened.get(data_key_id)
        if opened is not None:
            return opened
        row = await self._ctx.storage.get_data_key(data_key_id)
        if row is None:
            raise Conflict(_UNREADABLE, code="key_secret_unreadable")
        master = self.masters.get(row.master_id)
        if master is None and self.masters.refresh():
            master = self.masters.get(row.master_id)
        if master is None:
            if self.masters.current_id is None:
                raise self._unavailable(f"recoverable keys are unavailable: {self.masters.problem}")
            raise self._unavailable(_WRONG_MASTER)
        try:
            opened = sealing.unwrap_data_key(master, row.id, row.wrapped)
        except sealing.Unopenable:
            raise Conflict(_UNREADABLE, code="key_secret_unreadable") from None
        self._opened[data_key_id] = opened
        return opened

    async def reveal(self, key: Key, secret: KeySecret) -> str:
        """The plain text of a recoverable key; raises Conflict (``key_secret_unreadable``) for a secret that
        does not open as this key, MasterKeyUnavailable without the master key that wraps its data key."""
        data_key = await self.data_key(secret.data_key_id)
        try:
            plain = sealing.open_key(data_key, key.id, key.api_id, secret.nonce, secret.ciphertext)
        except (sealing.Unopenable, UnicodeDecodeError):
            raise Conflict(_UNREADABLE, code="key_secret_unreadable") from None
        if keyformat.digest(plain) != key.digest:
            raise Conflict(_UNREADABLE, code="key_secret_unreadable")
        return plain

    # -- rotation -------------------------------------------------------------------------------------------

    async def rotate(self, actor: Actor, new_master: bytes, *, batch: int = 100) -> Rotation:
        """Re-wrap every data key under ``new_master``, ``batch`` at a time, each batch in its own transaction so
        that servers keep working meanwhile; recoverable keys themselves are not touched. Data keys are opened with
        any master key at hand (current or previous). The last transaction writes the audit entry
        ``master_key.rotate`` with the counts. Data keys that no master key at hand opens are left as they are
        and reported (run again with the master key that wrapped them as the previous one)."""
        self.masters.refresh()
        target = sealing.master_key_id(new_master)
        already = (await self._ctx.storage.count_data_keys()).get(target, 0)
        rewrapped, unopened, after = 0, set[str](), ""
        while True:
            async with self._ctx.storage.transaction() as tx:
                rows = await tx.data_keys_to_rewrap(target, after=after, limit=batch)
                now = self._ctx.now()
                for row in rows:
                    master = self.masters.get(row.master_id)
                    if master is None:
                        unopened.add(row.master_id)
                        continue
                    try:
                        data_key = sealing.unwrap_data_key(master, row.id, row.wrapped)
                    except sealing.Unopenable:
                        detail = f"the data key {row.id} does not open under the master key it names"
                        raise Conflict(detail, code="key_secret_unreadable") from None
                    wrapped = sealing.wrap_data_key(new_master, row.id, data_key)
                    new = DataKey(row.id, target, wrapped, row.created_at, now)
                    if await tx.rewrap_data_key(row.id, row.master_id, new):
                        rewrapped += 1
                if len(rows) < batch:
                    changes = {
                        "master_key_id": [self.masters.current_id, target],
                        "rewrapped": rewrapped,
                        "already_rewrapped": already,
                        "unopened": len(unopened),
                    }
                    await self._ctx.audit(tx, actor, "master_key.rotate", target, changes, now)
                    break
                after = rows[-1].id
        return Rotation(target, rewrapped, already, tuple(sorted(unopened)))

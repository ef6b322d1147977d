"""The hash chain over the audit log (SPEC A2): how an entry's hash is made, and how a walk over the log finds the
first entry that was changed, inserted, removed or reordered.

Each entry carries ``seq`` (1, 2, 3, ... in commit order), ``prev_hash`` (the ``hash`` of the entry before it; 64
zeros for the first) and ``hash = SHA-256(bytes.fromhex(prev_hash) ‖ entry.canonical())`` in lowercase hex, where
:meth:`~keystile.core.models.AuditEntry.canonical` is the UTF-8 of the compact, sorted-key JSON of
``{seq, id, ts, actor, action, target, ip, user_agent, changes}``. Since ``seq`` is inside the hashed bytes, an
entry moved to another place no longer matches its hash; since each hash covers the one before it, changing an
entry and recomputing its hash breaks the link of the next one.

A chain that an attacker recomputed from some entry to the end verifies on its own: an anchored head (``seq`` and
``hash`` copied outside the database, see :class:`Anchor`) is what catches that, and a truncated tail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from keystile.core.models import AuditEntry

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry: 32 zero bytes, in hex."""

BreakKind = Literal["changed", "broken_link", "gap", "truncated", "head_missing", "head_differs"]


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    """The hash of ``entry`` (whose ``seq`` is set) following an entry whose hash is ``prev_hash`` (hex)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry.canonical()).hexdigest()


def _matches(entry: AuditEntry) -> bool:
    if entry.hash is None or entry.prev_hash is None:
        return False
    try:
        return chain_hash(entry.prev_hash, entry) == entry.hash
    except ValueError:  # a prev_hash that is not hex
        return False


@dataclass(frozen=True, slots=True)
class Anchor:
    """A head recorded outside the database: the entry ``seq`` had ``hash``."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH`` (as ``keystile audit head`` prints them); raises ValueError for anything else."""
        seq, sep, digest = text.strip().partition(":")
        digest = digest.lower()
        if not (sep and seq.isascii() and seq.isdigit() and len(seq) <= 18 and int(seq) >= 1):
            raise ValueError("an anchor is SEQ:HASH, a sequence number from 1 and a 64-digit hex hash")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("an anchor is SEQ:HASH, a sequence number from 1 and a 64-digit hex hash")
        return cls(int(seq), digest)

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True, slots=True)
class Break:
    """The first place where the chain does not hold: the entry ``seq`` (``id`` when it exists) and what is wrong."""

    kind: BreakKind
    seq: int
    id: str | None
    detail: str


class ChainCheck:
    """Checks entries fed in ``seq`` order, one at a time (so a walk over any log holds one entry at a time).

    ``start`` is the ``seq`` expected first. The first entry's ``prev_hash`` must be :data:`GENESIS` when ``start``
    is 1, else ``prev_hash`` when given (the anchored hash of the entry before ``start``), else it is trusted
    (``keystile audit verify --from``).
    """

    def __init__(self, start: int = 1, prev_hash: str | None = None) -> None:
        self.expected = start
        self.checked = 0
        self.last: AuditEntry | None = None
        self._first_prev = GENESIS if start == 1 else prev_hash

    def feed(self, entry: AuditEntry) -> Break | None:
        """Check the next entry; returns the break it shows, else ``None``."""
        seq = entry.seq
        assert seq is not None
        if seq != self.expected:
            if seq > self.expected:
                missing = f"seq {self.expected}" if seq == self.expected + 1 else f"seq {self.expected} to {seq - 1}"
                detail = f"gap in seq: {missing} missing before entry seq {seq} (id {entry.id}): entries were removed"
            else:
                detail = f"entry seq {seq} (id {entry.id}) is out of order: seq {self.expected} was expected"
            return Break("gap", seq, entry.id, detail)
        if not _matches(entry):
            return Break(
                "changed",
                seq,
                entry.id,
                f"hash mismatch at entry seq {seq} (id {entry.id}): its content does not match its hash, "
                "so it was changed, or forged",
            )
        before = self.last.hash if self.last is not None else (self._first_prev or entry.prev_hash)
        if entry.prev_hash != before:
            return Break(
                "broken_link",
                seq,
                entry.id,
                f"broken link at entry seq {seq} (id {entry.id}): it does not follow the entry before it, "
                "so an entry before it was replaced, inserted or reordered",
            )
        self.expected = seq + 1
        self.checked += 1
        self.last = entry
        return None


def check_anchor(anchor: Anchor, found: AuditEntry | None, last_seq: int) -> Break | None:
    """Whether the entry stored at ``anchor.seq`` (``found``) is the anchored one; ``last_seq`` is the log's end."""
    if found is None:
        return Break(
            "head_missing",
            anchor.seq,
            None,
            f"the anchored entry seq {anchor.seq} is missing (the log ends at seq {last_seq}): "
            "entries were removed from the end",
        )
    if found.hash != anchor.hash:
        return Break(
            "head_differs",
            anchor.seq,
            found.id,
            f"entry seq {anchor.seq} (id {found.id}) differs from the anchored head: the log up to it was rewritten",
        )
    return None


def check_head(head: tuple[int, str], last: AuditEntry | None, start: int) -> Break | None:
    """Whether a walk from ``start`` that ended at ``last`` reached the head recorded before it began (``audit_head``:
    the log's own record of its end, which entries removed from the end without it leave behind)."""
    seq, digest = head
    end = last.seq if last is not None and last.seq is not None else start - 1
    if end < seq:
        return Break(
            "truncated",
            end + 1,
            None,
            f"the log ends at seq {end} but its head records seq {seq}: entries were removed from the end",
        )
    if last is not None and end == seq and last.hash != digest:
        return Break(
            "head_differs",
            seq,
            last.id,
            f"entry seq {seq} (id {last.id}) differs from the head the log records: it was replaced",
        )
    return None


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a verification found: ``checked`` entries from ``start`` to ``last``, and the first ``problem``."""

    start: int
    checked: int
    last: AuditEntry | None
    problem: Break | None
    anchors: tuple[Anchor, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

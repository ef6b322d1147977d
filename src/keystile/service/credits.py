"""Balances as keys and identities are given them (SPEC L3, K5): a new balance, or a change merged into one.

A change follows JSON Merge Patch (RFC 7396) over the balance as the API shows it: fields not given stay, a
refill given in part merges into the current refill, and a balance or refill that does not exist yet must be
given whole (the error names the missing member, as decoding a whole one would).
"""

from __future__ import annotations

from keystile.core.commands import KEEP, CreditsUpdate, NewCredits, RefillUpdate
from keystile.core.ids import new_id
from keystile.core.models import Credits, Refill
from keystile.core.ports import Change
from keystile.errors import InvalidInput


def credits_change(credit_id: str) -> Change:
    """The change that says a balance was written by hand (set, add, subtract, a patch), not by spending: a copy
    kept elsewhere (a Redis credit counter, SPEC L3) is reloaded from the database on its next spend."""
    return Change("credits", credit_id)


def credits_from_spec(spec: NewCredits | None, existing: Credits | None, now: int) -> Credits | None:
    """The balance ``spec`` describes, keeping the id (and last refill) of the ``existing`` one; raises
    :class:`InvalidInput` (``invalid_refill``) for a daily refill with a day."""
    if spec is None:
        return None
    refill = spec.refill
    if refill is not None and refill.interval == "daily" and refill.day is not None:
        raise InvalidInput("a daily refill takes no day", code="invalid_refill", field="/credits/refill/day")
    credit_id = existing.id if existing is not None else new_id("cr", now)
    # A new balance counts as filled now, so its first refill comes at the next refill moment.
    refilled_at = existing.refilled_at if existing is not None else now
    return Credits(credit_id, spec.remaining, refill, refilled_at)


def as_spec(credits: Credits | None) -> NewCredits | None:
    """A balance as the spec that describes it."""
    return None if credits is None else NewCredits(credits.remaining, credits.refill)


def merged_credits(current: Credits | None, update: CreditsUpdate | None) -> NewCredits | None:
    """``update`` merged into the ``current`` balance (``None``: unlimited).

    Raises :class:`InvalidInput` (``invalid_request``) naming ``/credits/remaining`` when there is no balance
    and the update gives no ``remaining``, and ``/credits/refill/amount`` or ``/credits/refill/interval`` when
    there is no refill and the update's refill lacks one (the refill is checked first).
    """
    if update is None:
        return None
    refill = current.refill if current is not None else None
    if update.refill is None:
        refill = None
    elif update.refill is not KEEP:
        refill = _merged_refill(refill, update.refill)
    if update.remaining is not KEEP:
        remaining = update.remaining
    elif current is not None:
        remaining = current.remaining
    else:
        raise _missing("remaining", "/credits")
    return NewCredits(remaining, refill)


def _merged_refill(current: Refill | None, update: RefillUpdate) -> Refill:
    if update.amount is not KEEP:
        amount = update.amount
    elif current is not None:
        amount = current.amount
    else:
        raise _missing("amount", "/credits/refill")
    if update.interval is not KEEP:
        interval = update.interval
    elif current is not None:
        interval = current.interval
    else:
        raise _missing("interval", "/credits/refill")
    day = update.day if update.day is not KEEP else current.day if current is not None else None
    return Refill(amount, interval, day)


def _missing(member: str, parent: str) -> InvalidInput:
    # Worded as a missing member of a body is (keystile.schemas.decoding), which this error used to be.
    pointer = f"{parent}/{member}"
    return InvalidInput(f"Object missing required field `{member}` at {pointer}", code="invalid_request", field=pointer)

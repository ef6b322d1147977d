"""A "not found" answer never repeats something that is not an id: it might be a key sent in the wrong place."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from keystile.core import keys as keyformat
from keystile.errors import NotFound
from keystile.service import Keystile
from keystile.service.authz import Actor


async def test_a_key_used_as_an_id_is_not_echoed_in_the_not_found_answer(ks: Keystile, root: tuple[Actor, str]) -> None:
    actor, root_key = root
    plain = keyformat.generate("ks")
    lookups: list[Awaitable[object]] = [
        ks.keys.get(actor.principal, plain),
        ks.keys.revoke(actor, plain),
        ks.apis.get(actor.principal, plain),
        ks.root_keys.revoke(actor, root_key),
    ]
    for lookup in lookups:
        with pytest.raises(NotFound) as caught:
            await lookup
        assert plain not in caught.value.detail
        assert root_key not in caught.value.detail


async def test_a_well_formed_id_is_named_in_the_not_found_answer(ks: Keystile, root: tuple[Actor, str]) -> None:
    actor, _ = root
    with pytest.raises(NotFound, match="no key key_0000000000000000000000"):
        await ks.keys.get(actor.principal, "key_0000000000000000000000")

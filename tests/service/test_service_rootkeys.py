"""Root keys built in Python (not decoded from JSON) get the same rules as over HTTP."""

from __future__ import annotations

import pytest

from keystile.errors import InvalidInput
from keystile.schemas import RootKeyCreate
from keystile.service import CLI_ACTOR, Keystile


async def test_a_root_key_without_permissions_is_refused_even_when_built_in_python(ks: Keystile) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ks.root_keys.create(CLI_ACTOR, RootKeyCreate(permissions=[]))
    assert caught.value.extra["field"] == "/permissions"
    assert not await ks.root_keys.any_active()

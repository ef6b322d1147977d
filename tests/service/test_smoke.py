from keystile.schemas import ApiCreate, KeyCreate, VerifyRequest
from keystile.service import Keystile
from keystile.service.authz import Actor


async def test_a_created_key_verifies_until_it_is_revoked(ks: Keystile, root: tuple[Actor, str]) -> None:
    actor, _ = root
    api = await ks.apis.create(actor, ApiCreate(name="demo"))
    key, plain = await ks.keys.create(actor, api.id, KeyCreate(name="first"))

    assert (await ks.verification.verify(actor.principal, VerifyRequest(key=plain))).code == "VALID"
    await ks.keys.revoke(actor, key.id)
    assert (await ks.verification.verify(actor.principal, VerifyRequest(key=plain))).code == "REVOKED"

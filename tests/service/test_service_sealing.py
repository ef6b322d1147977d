"""The cryptography of recoverable keys (SPEC K3): master key parsing, fingerprints, and AES-256-GCM bound to what
each ciphertext belongs to."""

from __future__ import annotations

import base64
import secrets

import pytest

from keystile.errors import InvalidInput
from keystile.service import sealing

MASTER = bytes(range(32))


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(MASTER).decode(),
        base64.b64encode(MASTER).decode() + "\n",
        base64.urlsafe_b64encode(MASTER).decode(),
        MASTER.hex(),
        MASTER.hex().upper(),
    ],
    ids=["base64", "base64-newline", "base64url", "hex", "HEX"],
)
def test_a_master_key_is_read_as_base64_or_hex(text: str) -> None:
    assert sealing.parse_master_key(text, "KEYSTILE_MASTER_KEY") == MASTER


@pytest.mark.parametrize(
    "text", ["", "short", base64.b64encode(MASTER[:16]).decode(), MASTER.hex()[:-2], "zz" * 32, "é" * 44]
)
def test_anything_else_is_refused_without_being_quoted(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        sealing.parse_master_key(text, "KEYSTILE_MASTER_KEY")
    assert refused.value.code == "invalid_master_key"
    assert refused.value.detail.startswith("KEYSTILE_MASTER_KEY must hold a master key")
    if text:
        assert text not in refused.value.detail


def test_a_new_master_key_is_32_random_bytes_in_base64() -> None:
    first, second = sealing.new_master_key_text(), sealing.new_master_key_text()
    assert first != second
    assert len(sealing.parse_master_key(first, "new")) == 32


def test_the_fingerprint_is_stable_per_key_and_does_not_contain_it() -> None:
    key_id = sealing.master_key_id(MASTER)
    assert key_id == sealing.master_key_id(bytes(MASTER))
    assert key_id != sealing.master_key_id(secrets.token_bytes(32))
    assert key_id.startswith("mk_")
    assert len(key_id) == 19
    assert MASTER.hex()[:16] not in key_id


def test_a_data_key_opens_only_under_its_master_key_and_id() -> None:
    data_key = sealing.new_data_key()
    wrapped = sealing.wrap_data_key(MASTER, "dk_1", data_key)

    assert sealing.unwrap_data_key(MASTER, "dk_1", wrapped) == data_key
    assert sealing.wrap_data_key(MASTER, "dk_1", data_key) != wrapped  # a fresh nonce each time
    with pytest.raises(sealing.Unopenable):
        sealing.unwrap_data_key(secrets.token_bytes(32), "dk_1", wrapped)
    with pytest.raises(sealing.Unopenable):
        sealing.unwrap_data_key(MASTER, "dk_2", wrapped)
    with pytest.raises(sealing.Unopenable):
        sealing.unwrap_data_key(MASTER, "dk_1", wrapped[:-1] + bytes([wrapped[-1] ^ 1]))


def test_a_sealed_key_opens_only_as_the_same_key_of_the_same_api() -> None:
    data_key = sealing.new_data_key()
    nonce, ciphertext = sealing.seal_key(data_key, "key_1", "api_1", "ks_secret")

    assert len(nonce) == 12
    assert b"ks_secret" not in ciphertext
    assert sealing.open_key(data_key, "key_1", "api_1", nonce, ciphertext) == "ks_secret"
    assert sealing.seal_key(data_key, "key_1", "api_1", "ks_secret")[0] != nonce
    for key_id, api_id in [("key_2", "api_1"), ("key_1", "api_2")]:
        with pytest.raises(sealing.Unopenable):
            sealing.open_key(data_key, key_id, api_id, nonce, ciphertext)
    with pytest.raises(sealing.Unopenable):
        sealing.open_key(sealing.new_data_key(), "key_1", "api_1", nonce, ciphertext)

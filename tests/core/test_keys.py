"""The key format of SPEC K2: ``{prefix}_{32 base62}{6 base62 check}``, the check being base62(CRC32)."""

from __future__ import annotations

import hashlib
import re
import string
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystile.core import keys

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
PREFIXES = ["ks", "x", "acme", "abcdefghijkl", "ks_live", "shop1_test", "a_b"]


def expected_check(prefixed_random: str) -> str:
    """SPEC K2 written out independently of the code under test: unsigned CRC32 in base62, padded to 6."""
    number = zlib.crc32(prefixed_random.encode("ascii")) & 0xFFFF_FFFF
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = ALPHABET[rest] + digits
    return digits.rjust(6, "0")


def shape(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(prefix)}_(?P<random>[0-9A-Za-z]{{32}})(?P<check>[0-9A-Za-z]{{6}})")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_generated_key_has_the_documented_shape_and_checksum(prefix: str) -> None:
    key = keys.generate(prefix)

    match = shape(prefix).fullmatch(key)
    assert match is not None, key
    assert match["check"] == expected_check(f"{prefix}_{match['random']}")


def test_generated_keys_are_unique() -> None:
    generated = {keys.generate("ks") for _ in range(1000)}
    assert len(generated) == 1000


def test_the_random_part_draws_on_the_whole_alphabet() -> None:
    seen: set[str] = set()
    for _ in range(200):
        seen.update(keys.generate("ks")[3:35])
    assert seen == set(ALPHABET)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_parse_splits_a_key_into_prefix_random_and_check(prefix: str) -> None:
    key = keys.generate(prefix)

    parsed = keys.parse(key)

    assert parsed is not None
    assert parsed.prefix == prefix
    assert f"{parsed.prefix}_{parsed.random}{parsed.check}" == key
    assert len(parsed.random) == 32
    assert len(parsed.check) == 6
    assert keys.has_valid_checksum(parsed)


def test_root_keys_parse_with_their_two_part_prefix() -> None:
    parsed = keys.parse(keys.generate(keys.ROOT_PREFIX))
    assert parsed is not None
    assert parsed.prefix == "ks_root"


BODY = "A" * 32 + "000000"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ks",
        "ks_",
        BODY,  # no prefix at all
        "_" + BODY,  # an empty prefix
        "ks_" + BODY[:-1],  # one character short
        "ks_" + BODY + "0",  # one character long
        "ks_" + BODY[:-1] + "-",  # not base62
        "KS_" + BODY,  # prefixes are lower case
        "abcdefghijklm_" + BODY,  # a prefix part longer than 12
        "a_b_c_" + BODY,  # three prefix parts
        "ks__" + BODY,
        "ks " + BODY,
    ],
)
def test_parse_returns_none_for_strings_of_other_shapes(text: str) -> None:
    assert keys.parse(text) is None


def test_a_key_with_a_wrong_check_parses_but_fails_the_checksum() -> None:
    key = keys.generate("ks")
    wrong = key[:-6] + ("000001" if key[-6:] != "000001" else "000002")

    parsed = keys.parse(wrong)

    assert parsed is not None
    assert not keys.has_valid_checksum(parsed)


def test_the_checksum_covers_the_prefix() -> None:
    key = keys.generate("aa")
    moved = "ab" + key[2:]  # same random part and check, other prefix
    parsed = keys.parse(moved)
    assert parsed is not None
    assert not keys.has_valid_checksum(parsed)


def test_every_single_character_change_is_caught() -> None:
    # CRC32 detects every error confined to 32 consecutive bits, so each one-character substitution must fail
    # either the shape or the checksum: tried exhaustively on one key of each prefix form.
    for prefix in ("ks", "ks_live"):
        key = keys.generate(prefix)
        for position, original in enumerate(key):
            for replacement in ALPHABET + "_-":
                if replacement == original:
                    continue
                changed = key[:position] + replacement + key[position + 1 :]
                parsed = keys.parse(changed)
                assert parsed is None or not keys.has_valid_checksum(parsed), (position, replacement)


prefixes = st.from_regex(keys.PREFIX_RE, fullmatch=True)


@given(prefixes, st.data())
def test_changing_any_one_character_breaks_the_checksum_or_the_shape(prefix: str, data: st.DataObject) -> None:
    key = keys.generate(prefix)
    position = data.draw(st.integers(min_value=0, max_value=len(key) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != key[position]))
    changed = key[:position] + replacement + key[position + 1 :]

    parsed = keys.parse(changed)

    assert parsed is None or not keys.has_valid_checksum(parsed)


@given(prefixes)
def test_generate_then_parse_round_trips_for_every_valid_prefix(prefix: str) -> None:
    key = keys.generate(prefix)
    parsed = keys.parse(key)
    assert parsed is not None
    assert parsed.prefix == prefix
    assert parsed.check == expected_check(f"{prefix}_{parsed.random}")


@pytest.mark.parametrize("prefix", ["ks", "a", "abc123", "abcdefghijkl", "ks_live", "acme_test", "ks_rootx", "root"])
def test_valid_prefixes(prefix: str) -> None:
    assert keys.is_valid_prefix(prefix)


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "ks_root",  # reserved for root keys (SPEC K6)
        "KS",
        "abcdefghijklm",
        "ks_",
        "_ks",
        "ks_live_eu",
        "ks-live",
        "ks live",
        "ks_abcdefghijklm",
        "ks.live",
        "kś",
    ],
)
def test_invalid_and_reserved_prefixes_are_refused(prefix: str) -> None:
    assert not keys.is_valid_prefix(prefix)


@pytest.mark.parametrize("prefix", ["ks", "ks_live"])
def test_start_is_the_prefix_and_four_random_characters(prefix: str) -> None:
    key = keys.generate(prefix)
    random = key[len(prefix) + 1 : len(prefix) + 33]
    assert keys.start_of(key) == f"{prefix}_{random[:4]}"


def test_start_of_an_imported_key_shows_four_characters_only_when_the_key_is_long() -> None:
    assert keys.start_of("sk-live-0123456789abcdef") == "sk-l"
    assert keys.start_of("0123456789abcdef") == "0123"
    assert keys.start_of("0123456789abcde") == ""  # 15 characters: four of them would give too much away


def test_digest_is_sha256_of_the_key() -> None:
    key = keys.generate("ks")
    assert keys.digest(key) == hashlib.sha256(key.encode()).digest()

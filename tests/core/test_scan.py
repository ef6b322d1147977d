"""The key scanner (SPEC S3): Keystile keys are found by shape and checksum, lookalikes are not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keystile.core import base62
from keystile.core import keys as keyformat
from keystile.core.scan import find_in_line, find_keys

prefixes = st.from_regex(keyformat.PREFIX_RE, fullmatch=True)
bodies = st.text(alphabet=base62.ALPHABET, min_size=keyformat.RANDOM_LENGTH, max_size=keyformat.RANDOM_LENGTH)
checks = st.text(alphabet=base62.ALPHABET, min_size=keyformat.CHECK_LENGTH, max_size=keyformat.CHECK_LENGTH)
# What may surround a key in a file: anything but the characters a key is made of.
separators = st.text(alphabet=" \t=:;,\"'`()[]{}<>/\\|!?#$%&*+.~^@-", max_size=4)


def test_a_key_is_found_with_its_line_column_start_and_digest() -> None:
    key = keyformat.generate("ks")
    text = f"# settings\nAPI_KEY = '{key}'\n"
    [match] = find_keys(text)
    assert (match.line, match.column) == (2, 12)
    assert match.start == keyformat.start_of(key)
    assert match.digest == keyformat.digest(key).hex()
    assert match.length == len(key)


def test_a_match_never_holds_the_key() -> None:
    key = keyformat.generate("ks")
    [match] = find_keys(key)
    assert key not in repr(match)
    assert keyformat.parse(key) is not None
    assert all(key[4:] not in str(value) for value in (match.start, match.digest))


def test_two_part_prefixes_and_root_keys_are_found_whole() -> None:
    live, root = keyformat.generate("acme_live"), keyformat.generate(keyformat.ROOT_PREFIX)
    matches = list(find_keys(f"{live} {root}"))
    assert [m.start for m in matches] == [keyformat.start_of(live), keyformat.start_of(root)]
    assert [m.column for m in matches] == [1, len(live) + 2]


def test_a_key_glued_to_a_name_by_an_underscore_is_found() -> None:
    key = keyformat.generate("ks")
    [match] = find_keys(f"MY_TOKEN_{key}")
    assert match.digest == keyformat.digest(key).hex()
    assert match.column == len("MY_TOKEN_") + 1


def test_a_body_followed_by_more_base62_is_not_a_key() -> None:
    key = keyformat.generate("ks")
    assert list(find_keys(key + "A")) == []


def test_a_key_glued_to_letters_before_it_is_found() -> None:
    key = keyformat.generate("ks")
    for glued in (f"Z{key}", f"token{key}"):
        [match] = find_keys(glued)
        assert (match.column, match.start) == (len(glued) - len(key) + 1, keyformat.start_of(key))


def test_several_keys_on_several_lines() -> None:
    keys = [keyformat.generate("ks") for _ in range(3)]
    text = f"{keys[0]},{keys[1]}\n\n  {keys[2]}"
    assert [(m.line, m.column) for m in find_keys(text)] == [(1, 1), (1, len(keys[0]) + 2), (3, 3)]


def test_a_wrong_checksum_is_not_reported() -> None:
    key = keyformat.generate("ks")
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    assert list(find_keys(f"token={wrong}")) == []


@given(prefixes, bodies, checks, separators, separators)
def test_random_strings_of_the_shape_with_a_wrong_checksum_are_never_found(
    prefix: str, random: str, check: str, before: str, after: str
) -> None:
    if keyformat.checksum(f"{prefix}_{random}") == check:
        return  # a real key, by chance
    assert list(find_in_line(f"{before}{prefix}_{random}{check}{after}")) == []


@given(prefixes, bodies, separators, separators)
def test_every_key_of_the_shape_is_found_where_it_is(prefix: str, random: str, before: str, after: str) -> None:
    head = f"{prefix}_{random}"
    key = head + keyformat.checksum(head)
    [match] = find_in_line(f"{before}{key}{after}", 7)
    assert (match.line, match.column) == (7, len(before) + 1)
    assert match.digest == keyformat.digest(key).hex()

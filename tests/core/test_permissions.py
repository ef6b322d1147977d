"""Permission queries and grants (SPEC V3)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystile.core.permissions import (
    MAX_NESTING,
    MAX_QUERY_LENGTH,
    MAX_SLUG_LENGTH,
    Grants,
    Node,
    evaluate,
    parse_query,
    validate_grant,
)
from keystile.errors import InvalidInput, QuerySyntaxError


def allows(query: str, *grants: str) -> bool:
    return evaluate(parse_query(query), Grants(grants))


# -- parsing ------------------------------------------------------------------------------------------------


def test_a_single_slug_is_a_query() -> None:
    assert parse_query("docs.read") == "docs.read"


def test_slugs_take_letters_digits_and_the_four_separators() -> None:
    assert parse_query("Api_2:keys.read-all") == "Api_2:keys.read-all"


def test_and_binds_tighter_than_or() -> None:
    assert parse_query("a OR b AND c") == ("or", ("a", ("and", ("b", "c"))))
    assert parse_query("a AND b OR c") == ("or", (("and", ("a", "b")), "c"))


def test_parentheses_group() -> None:
    assert parse_query("(a OR b) AND c") == ("and", (("or", ("a", "b")), "c"))
    assert parse_query("((a))") == "a"


@pytest.mark.parametrize("operator", ["and", "AND", "And", "aNd"])
def test_and_in_any_case(operator: str) -> None:
    assert parse_query(f"a {operator} b") == ("and", ("a", "b"))


@pytest.mark.parametrize("operator", ["or", "OR", "Or", "oR"])
def test_or_in_any_case(operator: str) -> None:
    assert parse_query(f"a {operator} b") == ("or", ("a", "b"))


def test_whitespace_is_free_around_tokens() -> None:
    assert parse_query("\t(a\nAND\r\nb)OR(c)  ") == ("or", (("and", ("a", "b")), "c"))


def test_chains_of_one_operator_are_flat() -> None:
    assert parse_query("a AND b AND c") == ("and", ("a", "b", "c"))


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("", 0),
        ("   ", 0),
        ("a AND", 5),  # nothing after the operator: the end of the query
        ("AND a", 0),
        ("a b", 2),
        ("(a", 2),
        ("a)", 1),
        ("a OR (b AND)", 11),
        ("a AND ()", 7),
        ("a & b", 2),
        ("docs.read OR docs.*", 13),  # wildcards are for grants
        ("a AND b OR OR c", 11),
        ("a AND é", 6),
        ("(a OR b))", 8),
        ("a AND " + "x" * (MAX_SLUG_LENGTH + 1), 6),
        ("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1), MAX_NESTING),
        ("a" * (MAX_QUERY_LENGTH + 1), MAX_QUERY_LENGTH),
    ],
)
def test_syntax_errors_carry_the_offset_of_the_mistake(query: str, position: int) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)

    assert caught.value.position == position
    assert caught.value.extra["position"] == position
    assert caught.value.code == "invalid_permission_query"
    assert isinstance(caught.value, InvalidInput)  # a 400, not a server error


def test_a_slug_of_the_maximum_length_parses() -> None:
    assert parse_query("x" * MAX_SLUG_LENGTH) == "x" * MAX_SLUG_LENGTH


def test_nesting_up_to_the_limit_parses() -> None:
    query = "(" * MAX_NESTING + "a" + ")" * MAX_NESTING
    assert parse_query(query) == "a"


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    # Hundreds of "(" once exhausted the recursion limit: a RecursionError, i.e. a 500 for a bad request.
    query = "(" * 1000 + "a" + ")" * 1000
    with pytest.raises(QuerySyntaxError):
        parse_query(query)


def parse_or_error(text: str) -> Node | QuerySyntaxError:
    """The parsed query, or the syntax error; any other exception propagates and fails the test."""
    try:
        return parse_query(text)
    except QuerySyntaxError as exc:
        return exc


@given(st.text())
def test_parsing_any_text_raises_nothing_but_query_syntax_error(text: str) -> None:
    result = parse_or_error(text)

    if isinstance(result, QuerySyntaxError):
        assert 0 <= result.position <= len(text)
    else:
        assert isinstance(evaluate(result, Grants(["*"])), bool)


@given(st.text(alphabet="()aAnNdDoOrRxy.*_ \t", max_size=200))
def test_parsing_query_like_text_raises_nothing_but_query_syntax_error(text: str) -> None:
    result = parse_or_error(text)

    if isinstance(result, QuerySyntaxError):
        assert 0 <= result.position <= len(text)


# -- grants ---------------------------------------------------------------------------------------------------


def test_an_exact_grant() -> None:
    assert allows("docs.read", "docs.read")
    assert not allows("docs.write", "docs.read")
    assert not allows("Docs.read", "docs.read")  # slugs are case-sensitive


def test_a_wildcard_grant_covers_everything_below_it() -> None:
    grants = Grants(["docs.*"])
    assert grants.has("docs.read")
    assert grants.has("docs.a.b")
    assert not grants.has("docsx")
    assert not grants.has("docsx.read")
    assert not grants.has("docs")
    assert not grants.has("xdocs.read")
    assert not grants.has("my.docs.read")


def test_a_nested_wildcard_grant() -> None:
    grants = Grants(["api.keys.*"])
    assert grants.has("api.keys.read")
    assert not grants.has("api.keysx.read")
    assert not grants.has("api.read")


def test_star_grants_everything() -> None:
    grants = Grants(["*"])
    assert grants.has("docs.read")
    assert grants.has("anything-at:all")


def test_no_grants_grant_nothing() -> None:
    assert not Grants([]).has("docs.read")


def test_queries_combine_grants() -> None:
    query = "docs.read AND (docs.write OR admin)"
    assert allows(query, "docs.read", "admin")
    assert allows(query, "docs.*")
    assert not allows(query, "docs.read")
    assert not allows(query, "admin", "docs.write")


def test_precedence_changes_the_answer() -> None:
    assert allows("a OR b AND c", "a")
    assert not allows("(a OR b) AND c", "a")


@pytest.mark.parametrize("grant", ["docs.read", "docs.*", "*", "a:b-c_d.E9", "x" * MAX_SLUG_LENGTH])
def test_valid_grants(grant: str) -> None:
    assert validate_grant(grant) == grant


@pytest.mark.parametrize(
    "grant",
    ["", "docs read", "docs.**", "*.docs", "docs*", "docs.*.read", "x" * (MAX_SLUG_LENGTH + 1), "é", "a/b", ".*"],
)
def test_invalid_grants_are_refused(grant: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_grant(grant)
    assert caught.value.code == "invalid_permission"


# -- evaluation against a reference -----------------------------------------------------------------------------

SLUGS = ["a", "b", "admin", "docs.read", "docs.write", "docs.a.b", "docsx", "x:y", "z-1"]
GRANTS = [*SLUGS, "docs.*", "docs.a.*", "*", "x.*"]


@dataclass(frozen=True)
class Ast:
    operator: str  # "slug", "and" or "or"
    slug: str = ""
    children: tuple[Ast, ...] = ()


def reference_has(grants: frozenset[str], slug: str) -> bool:
    """SPEC V3 read literally: an exact grant, ``*``, or ``prefix.*`` covering ``prefix.`` and below."""
    return any(g == slug or g == "*" or (g.endswith(".*") and slug.startswith(g[:-1])) for g in grants)


def reference_evaluate(ast: Ast, grants: frozenset[str]) -> bool:
    if ast.operator == "slug":
        return reference_has(grants, ast.slug)
    results = [reference_evaluate(child, grants) for child in ast.children]
    return all(results) if ast.operator == "and" else any(results)


asts = st.recursive(
    st.sampled_from(SLUGS).map(lambda slug: Ast("slug", slug)),
    lambda inner: st.builds(
        Ast, st.sampled_from(["and", "or"]), st.just(""), st.lists(inner, min_size=2, max_size=4).map(tuple)
    ),
    max_leaves=20,
)


@st.composite
def rendered(draw: st.DrawFn, ast: Ast, parent: str | None = None) -> str:
    """``ast`` as query text: operators in random case, random spacing, parentheses where needed or at random."""
    if ast.operator == "slug":
        return ast.slug
    operator = draw(st.sampled_from([ast.operator, ast.operator.upper(), ast.operator.title()]))
    parts = [draw(rendered(child, ast.operator)) for child in ast.children]
    space = draw(st.sampled_from([" ", "  ", "\t", "\n "]))
    text = f"{space}{operator}{space}".join(parts)
    # OR inside AND needs parentheses (AND binds tighter); anywhere else they are optional.
    if (parent == "and" and ast.operator == "or") or draw(st.booleans()):
        text = f"({text})"
    return text


@given(st.data(), asts, st.frozensets(st.sampled_from(GRANTS)))
def test_evaluate_agrees_with_a_reference_evaluator(data: st.DataObject, ast: Ast, grants: frozenset[str]) -> None:
    query = data.draw(rendered(ast))

    node: Node = parse_query(query)

    assert evaluate(node, Grants(grants)) == reference_evaluate(ast, grants), query


@given(st.sampled_from(SLUGS), st.frozensets(st.sampled_from(GRANTS)))
def test_grants_agree_with_the_reference(slug: str, grants: frozenset[str]) -> None:
    assert Grants(grants).has(slug) == reference_has(grants, slug)

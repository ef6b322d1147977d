"""Permissions (SPEC V3): slugs, grants with ``.*`` wildcards, and the query language.

A query is ``docs.read AND (docs.write OR admin)``: ``AND`` binds tighter than ``OR``, both in any case, and
parentheses group. Queries are parsed once and cached; a syntax error reports the 0-based character offset.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import TypeAlias

from keystile.errors import InvalidInput, QuerySyntaxError

MAX_SLUG_LENGTH = 128
MAX_QUERY_LENGTH = 4096
# Parsing and evaluation recurse once per level of parentheses; without a bound, a query of a few hundred "("
# would exhaust Python's recursion limit and surface as a server error instead of a syntax error.
MAX_NESTING = 32
SLUG_RE = re.compile(r"[A-Za-z0-9_:.\-]+")
# A grant is a slug, a slug ending in ".*", or "*" alone.
GRANT_RE = re.compile(r"\*|[A-Za-z0-9_:.\-]+(?:\.\*)?")
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_:.-*")

# The parsed form: a slug, or ("and" | "or", children).
Node: TypeAlias = "str | tuple[str, tuple[Node, ...]]"


_OPERATORS = frozenset(("AND", "OR"))
"""The query's words, which no permission asked for by name may be."""


def is_permission_name(text: str) -> bool:
    """Whether ``text`` can be asked for by name in a query: a slug of at most :data:`MAX_SLUG_LENGTH` characters
    that is not one of the query's words (``AND``, ``OR``, in any case)."""
    return len(text) <= MAX_SLUG_LENGTH and SLUG_RE.fullmatch(text) is not None and text.upper() not in _OPERATORS


def validate_grant(grant: str) -> str:
    """Check one permission a key (or role) is granted; returns it, or raises :class:`InvalidInput`."""
    if len(grant) > MAX_SLUG_LENGTH or GRANT_RE.fullmatch(grant) is None:
        raise InvalidInput(
            f"{grant[:40]!r} is not a permission: use letters, digits and _ : . - (at most "
            f"{MAX_SLUG_LENGTH} characters), optionally ending in .*",
            code="invalid_permission",
        )
    return grant


class Grants:
    """The set of permissions a key holds (its own plus those of its roles), with wildcards resolved fast."""

    __slots__ = ("everything", "exact", "prefixes")

    def __init__(self, grants: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for grant in grants:
            if grant.endswith(".*"):
                prefixes.add(grant[:-2])
            exact.add(grant)
        self.everything = "*" in exact
        self.exact = frozenset(exact)
        self.prefixes = frozenset(prefixes)

    def has(self, slug: str) -> bool:
        """Whether ``slug`` is granted: exactly, by ``*``, or by a ``prefix.*`` wildcard above it."""
        if self.everything or slug in self.exact:
            return True
        if self.prefixes:
            dot = slug.find(".")
            while dot != -1:
                if slug[:dot] in self.prefixes:
                    return True
                dot = slug.find(".", dot + 1)
        return False


def _tokens(query: str) -> list[tuple[str, str, int]]:
    """Split a query into ``(kind, text, position)`` tokens: ``(``, ``)``, ``and``, ``or``, ``slug``."""
    tokens: list[tuple[str, str, int]] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char in " \t\r\n":
            i += 1
        elif char in "()":
            tokens.append((char, char, i))
            i += 1
        elif char in _WORD_CHARS:
            j = i
            while j < n and query[j] in _WORD_CHARS:
                j += 1
            word = query[i:j]
            lowered = word.lower()
            if lowered in ("and", "or"):
                tokens.append((lowered, word, i))
            else:
                if "*" in word:
                    raise QuerySyntaxError("a query asks for permissions; wildcards are for grants", position=i)
                if len(word) > MAX_SLUG_LENGTH:
                    raise QuerySyntaxError(f"permission longer than {MAX_SLUG_LENGTH} characters", position=i)
                tokens.append(("slug", word, i))
            i = j
        else:
            raise QuerySyntaxError(f"unexpected character {char!r}", position=i)
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokens(query)
        self.index = 0
        self.depth = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _unexpected(self, expected: str) -> QuerySyntaxError:
        token = self._peek()
        if token is None:
            return QuerySyntaxError(f"expected {expected} at the end of the query", position=len(self.query))
        return QuerySyntaxError(f"expected {expected}, found {token[1]!r}", position=token[2])

    def parse(self) -> Node:
        if not self.tokens:
            raise QuerySyntaxError("the query is empty", position=0)
        node = self._expr()
        if self._peek() is not None:
            raise self._unexpected("AND, OR or the end of the query")
        return node

    def _expr(self) -> Node:
        return self._chain("or", self._term)

    def _term(self) -> Node:
        return self._chain("and", self._factor)

    def _chain(self, operator: str, operand: Callable[[], Node]) -> Node:
        children = [operand()]
        while (token := self._peek()) is not None and token[0] == operator:
            self.index += 1
            children.append(operand())
        return children[0] if len(children) == 1 else (operator, tuple(children))

    def _factor(self) -> Node:
        token = self._peek()
        if token is None or token[0] not in ("slug", "("):
            raise self._unexpected("a permission or '('")
        self.index += 1
        if token[0] == "slug":
            return token[1]
        if self.depth == MAX_NESTING:
            raise QuerySyntaxError(f"parentheses nested deeper than {MAX_NESTING} levels", position=token[2])
        self.depth += 1
        node = self._expr()
        self.depth -= 1
        closing = self._peek()
        if closing is None or closing[0] != ")":
            raise self._unexpected("')'")
        self.index += 1
        return node


@functools.lru_cache(maxsize=1024)
def parse_query(query: str) -> Node:
    """Parse a permission query; raises :class:`QuerySyntaxError` with the offending ``position``.

    A query longer than ``MAX_QUERY_LENGTH`` fails at that offset; parentheses nest at most ``MAX_NESTING`` deep.
    """
    if len(query) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"the query is longer than {MAX_QUERY_LENGTH} characters", position=MAX_QUERY_LENGTH)
    return _Parser(query).parse()


def evaluate(node: Node, grants: Grants) -> bool:
    """Whether ``grants`` satisfy a parsed query."""
    if isinstance(node, str):
        return grants.has(node)
    operator, children = node
    if operator == "and":
        return all(evaluate(child, grants) for child in children)
    return any(evaluate(child, grants) for child in children)

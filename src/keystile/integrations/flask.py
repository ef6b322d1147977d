"""Flask integration: the decorator ``@require_key(permissions=...)``.

::

    from keystile.integrations import verifier_from_env
    from keystile.integrations.flask import current_key, init_app, require_key

    app = Flask(__name__)
    init_app(app, verifier_from_env())

    @app.get("/notes")
    @require_key("notes.read")
    def notes():
        return {"owner": current_key().owner_id}

Refused requests are answered with problem+json before the view runs. Flask is imported when a request is
checked, never at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from keystile.errors import KeystileError
from keystile.integrations._guard import VerifiedKey
from keystile.integrations._verifiers import KeyVerifier
from keystile.integrations.wsgi import BlockingVerifier, problem_answer

P = ParamSpec("P")
R = TypeVar("R")
_EXTENSION = "keystile"
_G_KEY = "keystile_key"


def init_app(app: Any, verifier: KeyVerifier) -> BlockingVerifier:
    """Make ``verifier`` the one :func:`require_key` uses in the Flask ``app``; returns its blocking runner."""
    blocking = BlockingVerifier(verifier)
    app.extensions[_EXTENSION] = blocking
    return blocking


def require_key(
    permissions: str | None = None, *, api_id: str | None = None, verifier: BlockingVerifier | None = None
) -> Callable[[Callable[P, R]], Callable[P, R | tuple[bytes, int, list[tuple[str, str]]]]]:
    """A view decorator: the view runs only for a request whose key verifies (and satisfies ``permissions``, a
    permission query); :func:`current_key` then answers that key. ``verifier`` defaults to :func:`init_app`'s."""

    def decorate(view: Callable[P, R]) -> Callable[P, R | tuple[bytes, int, list[tuple[str, str]]]]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | tuple[bytes, int, list[tuple[str, str]]]:
            from flask import current_app, g, request

            blocking = verifier or current_app.extensions[_EXTENSION]
            try:
                key = blocking.authenticate(request.environ, permissions=permissions, api_id=api_id)
            except KeystileError as exc:
                return problem_answer(exc, request.environ)
            setattr(g, _G_KEY, key)
            return view(*args, **kwargs)

        return guarded

    return decorate


def current_key() -> VerifiedKey:
    """The key the current request was let in with (inside a view decorated with :func:`require_key`)."""
    from flask import g

    key = getattr(g, _G_KEY, None)
    if not isinstance(key, VerifiedKey):
        raise RuntimeError("current_key() is only known inside a view decorated with @require_key")
    return key

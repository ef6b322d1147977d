"""Keystile's HTTP edge, free of any web framework: what the server, ``keystile proxy`` and the integrations all
sit on, so that importing the ASGI middleware loads neither Starlette nor the server's routes.

- :mod:`keystile.http.asgi`: ASGI types, bodies read under a size limit, header helpers, request ids.
- :mod:`keystile.http.credentials`: where a request carries a key or a root key, parsed once.
- :mod:`keystile.http.verify`: a verification request from the wire, and its answer encoded for the wire.
- :mod:`keystile.http.answers`: what a verification result means over HTTP (statuses, ``Retry-After``,
  ``RateLimit-*`` and identity headers).
- :mod:`keystile.http.refusals`: the one answer to each refused request, for the proxy and the integrations.
- :mod:`keystile.http.problems`: errors as RFC 9457 problem+json.
- :mod:`keystile.http.forwarded`: trusted proxies and the client's address.
- :mod:`keystile.http.transport`: HSTS and the plain-HTTP warning.

It imports :mod:`keystile.core`, :mod:`keystile.errors`, :mod:`keystile.schemas` and the standard library (and
msgspec), never :mod:`keystile.server`.
"""

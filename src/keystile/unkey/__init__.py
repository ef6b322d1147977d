"""Unkey-compatible routes (``POST /v2/<namespace>.<operation>``): Unkey's v2 API answered by Keystile, so that a
team using Unkey's SDKs moves to a self-hosted Keystile by changing the SDK's server URL.

A thin translation: every operation calls the same services as ``/v1`` (root keys through
``RootKeyService.authenticate``, scoping, audit and change events alike; verification through
``VerificationService.verify``), and only the shapes are Unkey's: camelCase fields, times in epoch
milliseconds, ``{meta: {requestId}, data}`` envelopes and Unkey's error bodies and statuses.

- :mod:`keystile.unkey._app`: the ASGI app, the table of operations, the envelope.
- :mod:`keystile.unkey._wire`: Unkey's request and answer bodies.
- :mod:`keystile.unkey._convert`: records in Unkey's shapes, and what does not map one to one.
- :mod:`keystile.unkey._keys`, :mod:`keystile.unkey._resources`: the operations.
- :mod:`keystile.unkey._errors`: errors in Unkey's shape, with its statuses and error types.
"""

from __future__ import annotations

from keystile.unkey._app import KEY_BODIES, OPERATIONS, PREFIX, UnkeyApp

__all__ = ["KEY_BODIES", "OPERATIONS", "PREFIX", "UnkeyApp"]

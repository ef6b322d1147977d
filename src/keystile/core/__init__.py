"""Keystile's pure domain: key format, models, permissions, verification.

Nothing in this package does I/O, reads the environment or the wall clock: time comes from an injected
:class:`~keystile.core.clock.Clock` and storage from the ports in :mod:`keystile.core.ports`.
"""

"""Leak detection (SPEC S3) around the pure scanner of :mod:`keystile.core.scan`.

- :mod:`keystile.leaks.sources`: files, directories and git history, as :class:`~keystile.leaks.sources.Finding`
  records (where, the key's ``start`` and its digest; never the key).
- :mod:`keystile.leaks.reports`: findings as JSON and as SARIF 2.1.0 (GitHub code scanning).
- :mod:`keystile.leaks.partner`: GitHub's secret scanning partner program, the payload of ``POST /v1/leaks`` and
  the check of its ECDSA signature.
"""

"""Leak reports of GitHub's secret scanning (SPEC S3) and the labels GitHub reads back."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct


class LeakReport(Struct):
    """One match GitHub found (unknown fields are ignored: GitHub may add some)."""

    token: Annotated[str, Meta(description="The string that matched Keystile's key pattern.")]
    type: Annotated[str, Meta(max_length=256, description="The secret type registered with GitHub.")] = ""
    url: Annotated[str, Meta(max_length=4096, description="Where GitHub found it (may be empty).")] = ""
    source: Annotated[str, Meta(max_length=256, description="content, commit, pull_request, gist, npm...")] = ""


class LeakLabel(Struct):
    """GitHub's feedback format: whether a reported token was a real key of this deployment."""

    token_hash: Annotated[str, Meta(description="SHA-256 of the token, in hex.")]
    token_type: str
    label: Annotated[str, Meta(description="`true_positive` (a key of this deployment) or `false_positive`.")]

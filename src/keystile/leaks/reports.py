"""Findings of ``keystile scan`` as documents: JSON for scripts and SARIF 2.1.0 for code scanning tools.

Both carry the key's ``start`` and digest, never the key. In SARIF every finding is a result of one rule,
``keystile/leaked-key``; its level says how urgent it is: ``error`` for a key that works or may (active,
disabled, expired, or unknown without a database), ``warning`` for one this deployment does not know (another
deployment's, perhaps) or that the scan has just revoked, ``note`` for one revoked before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keystile import __version__
from keystile.leaks.sources import Finding, Tally

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULE_ID = "keystile/leaked-key"
INFORMATION_URI = "https://github.com/keystile/keystile/blob/main/docs/leaks.md"
UNKNOWN = "unknown"
"""The status of every key when no database could be asked."""


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the database said about a found key: ``status`` (``active``, ``disabled``, ``expired``, ``revoked``,
    ``not_found``, or ``unknown`` without a database), its ids, and whether this scan revoked it."""

    status: str = UNKNOWN
    key_id: str | None = None
    api_id: str | None = None
    revoked_now: bool = False


def finding_json(finding: Finding, state: KeyState) -> dict[str, Any]:
    return {
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "commit": finding.commit,
        "start": finding.start,
        "digest": finding.digest,
        "status": state.status,
        "key_id": state.key_id,
        "api_id": state.api_id,
        "revoked_now": state.revoked_now,
    }


def summary(findings: Sequence[Finding], states: Mapping[str, KeyState], tally: Tally) -> dict[str, int]:
    """Counts over a scan: findings, distinct keys, keys still active, keys revoked by it, what was read."""
    keys = {finding.digest for finding in findings}
    return {
        "findings": len(findings),
        "keys": len(keys),
        "active": sum(1 for digest in keys if states[digest].status == "active"),
        "revoked_now": sum(1 for digest in keys if states[digest].revoked_now),
        "files": tally.files,
        "skipped": tally.skipped,
        "commits": tally.commits,
    }


def json_document(findings: Sequence[Finding], states: Mapping[str, KeyState], tally: Tally) -> dict[str, Any]:
    """``{findings: [...], summary: {...}}``."""
    return {
        "findings": [finding_json(finding, states[finding.digest]) for finding in findings],
        "summary": summary(findings, states, tally),
    }


def level(state: KeyState) -> str:
    if state.status == "revoked":
        return "warning" if state.revoked_now else "note"
    if state.status == "not_found":
        return "warning"
    return "error"


def describe(finding: Finding, state: KeyState) -> str:
    """One sentence about a finding, for people (SARIF messages and the text output)."""
    where = f" in commit {finding.commit[:12]}" if finding.commit else ""
    if state.revoked_now:
        what = "revoked by this scan"
    elif state.status == "not_found":
        what = "not a key of this deployment"
    elif state.status == UNKNOWN:
        what = "status unknown: no database was asked"
    else:
        what = state.status
    owner = f" (key {state.key_id})" if state.key_id else ""
    return f"Keystile key {finding.start}…{owner}{where}: {what}."


def artifact_uri(path: str) -> str:
    """A relative path as a URI reference (repository-relative, as code scanning wants), an absolute one as
    ``file://``."""
    as_path = Path(path)
    if as_path.is_absolute():
        return as_path.as_uri()
    return quote(as_path.as_posix())


def _result(finding: Finding, state: KeyState) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": RULE_ID,
        "ruleIndex": 0,
        "level": level(state),
        "message": {"text": describe(finding, state)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(finding.path)},
                    "region": {
                        "startLine": finding.line,
                        "startColumn": finding.column,
                        "endColumn": finding.column + finding.length,
                    },
                }
            }
        ],
        "partialFingerprints": {"keystileKeyDigest/v1": finding.digest},
        "properties": {"start": finding.start, "status": state.status, "revokedNow": state.revoked_now},
    }
    if finding.commit:
        result["properties"]["commit"] = finding.commit
    if state.key_id:
        result["properties"]["keyId"] = state.key_id
    return result


def sarif_document(findings: Sequence[Finding], states: Mapping[str, KeyState]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run of the ``keystile`` tool."""
    rule = {
        "id": RULE_ID,
        "name": "LeakedKeystileKey",
        "shortDescription": {"text": "A Keystile API key is written in the code or its history"},
        "fullDescription": {
            "text": "A string with a Keystile key's prefix, shape and valid CRC32 checksum: an API key. Anyone who "
            "reads the repository can use it until it is revoked."
        },
        "help": {
            "text": "Revoke the key (keystile scan --revoke, or keystile keys revoke KEY_ID), issue a new one, and "
            "load it from the environment or a secret store instead of the code.",
            "markdown": "Revoke the key (`keystile scan --revoke`, or `keystile keys revoke KEY_ID`), issue a new "
            "one, and load it from the environment or a secret store instead of the code.",
        },
        "helpUri": INFORMATION_URI,
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "secret"], "precision": "very-high", "security-severity": "9.0"},
    }
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "keystile",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [rule],
                    }
                },
                "results": [_result(finding, states[finding.digest]) for finding in findings],
            }
        ],
    }

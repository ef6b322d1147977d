"""``keystile.schemas`` is a package of one module per resource (issue 9, reshape 5); what it exported as one
module is still importable from the package, which is how the client's users import the wire structs."""

from __future__ import annotations

from pathlib import Path

import pytest

import keystile.schemas

# Every public name of keystile/schemas.py before the split (its TypeVar ``T`` aside).
BEFORE_THE_SPLIT = [
    "Allowlist", "ApiCreate", "ApiOut", "ApiPatch", "AuditOut", "BulkKeyCreate", "BulkKeysCreated", "CIDR_PATTERN",
    "Cidr", "Count", "CreditsChange", "CreditsOut", "CreditsPatch", "CreditsSpec", "EventOut", "FreeJson",
    "GRANT_PATTERN", "GracePeriod", "IdentityCreate", "IdentityOut", "IdentityPatch", "KeyCreate", "KeyCreated",
    "KeyOut", "KeyPatch", "LeakLabel", "LeakReport", "LimitName", "MAX_BULK", "MAX_CREDITS", "MAX_META_BYTES",
    "MaxKeyAge", "NO_NUL", "Name", "OwnerId", "Page", "Permission", "Prefix", "Problem", "RULES", "RateLimitOut",
    "RateLimitSpec", "RateLimitState", "RatelimitRequest", "RatelimitResponse", "Recoverable", "RefillOut",
    "RefillPatch", "RefillSpec", "RemainingOut", "RerollSpec", "RoleList", "RoleName", "RoleOut", "RoleSpec",
    "RootKeyCreate", "RootKeyCreated", "RootKeyOut", "StaleExpiry", "Status", "TimeOut", "Timestamp",
    "VerificationCount", "VerificationSeries", "VerifyCredits", "VerifyRateLimit", "VerifyRequest", "VerifyResponse",
    "api_out", "audit_out", "credits_out", "event_out", "identity_out", "key_created", "key_out", "ratelimit_out",
    "role_out", "root_key_created", "root_key_out", "series_out", "to_builtins",
]  # fmt: skip
PACKAGE = Path(keystile.schemas.__file__).parent


@pytest.mark.parametrize("name", BEFORE_THE_SPLIT)
def test_a_name_the_single_module_exported_is_exported_by_the_package(name: str) -> None:
    assert name in keystile.schemas.__all__
    assert getattr(keystile.schemas, name) is not None


def test_the_package_exports_exactly_what_its_all_lists() -> None:
    public = {name for name in vars(keystile.schemas) if not name.startswith("_")}
    modules = {path.stem for path in PACKAGE.glob("*.py")}

    assert sorted(public - modules - {"annotations"}) == sorted(keystile.schemas.__all__)
    assert len(set(keystile.schemas.__all__)) == len(keystile.schemas.__all__)


def test_the_json_decoding_helpers_are_exported_too() -> None:
    assert {"decode", "convert"} <= set(keystile.schemas.__all__)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_each_module_stays_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) < 300

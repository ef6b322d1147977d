"""The Redis URL setting (``KEYSTILE_REDIS_URL``): what Keystile's connections can use is accepted, anything else
is refused with ``invalid_setting`` naming the variable, never quoting the password; and passwords are masked
wherever settings are shown."""

from __future__ import annotations

import pytest

from keystile.config import Settings, mask_url
from keystile.errors import InvalidInput

PASSWORD = "s3cret-pw"


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "rediss://user:pw@h:6380/1",
        "REDIS://h",
        "redis://h/",
        "redis://localhost",
        "redis://[::1]:6379/15",
        f"redis://:{PASSWORD}@h:6379/2",
        "redis://h:6379/0?db=3",
        "rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false",
        "rediss://h/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
    ],
)
def test_redis_urls_keystile_can_use_are_accepted(url: str) -> None:
    assert Settings.from_env({"KEYSTILE_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h:6379", "redis:// or rediss://"),
        ("h:6379", "redis:// or rediss://"),
        ("unix:///tmp/redis.sock", "redis:// or rediss://"),
        ("redis://h/abc", "database number"),
        (f"redis://:{PASSWORD}@h/abc", "database number"),
        ("redis://h/0/1", "database number"),
        ("redis://h/-1", "database number"),
        ("redis://h/٣", "database number"),
        ("redis://h/" + "9" * 5000, "database number"),
        ("redis:///0", "host"),
        (f"redis://:{PASSWORD}@/0", "host"),
        ("redis://h:0/0", "port"),
        ("redis://h:65536/0", "port"),
        (f"redis://:{PASSWORD}@h:port/0", "port"),
        (f"redis://:{PASSWORD[:3]}/{PASSWORD[3:]}@h/0", "percent-encoded"),
        (f"redis://:{PASSWORD[:3]}?{PASSWORD[3:]}@h/0", "percent-encoded"),
        ("redis://h/0#x", "fragment"),
        ("redis://h/0?db=x", "db="),
        ("redis://h/0?db=1&db=2", "db twice"),
        ("redis://h/0?socket_timeoot=1", "unknown query parameter socket_timeoot"),
        (f"redis://h/0?password={PASSWORD}", "unknown query parameter password"),
        (f"redis://h/0?{PASSWORD}=1", "unknown query parameter ("),
        ("redis://h/0?ssl_cert_reqs=none", "use rediss://"),
        ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs= one of none, optional, required"),
        ("rediss://h/0?ssl_check_hostname=off", "ssl_check_hostname= one of"),
    ],
)
def test_other_redis_urls_are_refused_naming_the_variable_and_not_the_password(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings.from_env({"KEYSTILE_REDIS_URL": url})
    assert refused.value.code == "invalid_setting"
    assert refused.value.detail.startswith("KEYSTILE_REDIS_URL ")
    assert why in refused.value.detail
    assert PASSWORD not in refused.value.detail
    assert PASSWORD[3:] not in refused.value.detail


def test_a_redis_url_flag_is_checked_like_the_variable() -> None:
    with pytest.raises(InvalidInput, match="KEYSTILE_REDIS_URL must end in a database number"):
        Settings.from_env({}, redis_url="redis://h/abc")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{PASSWORD}@h:6379/0", "redis://:***@h:6379/0"),
        (f"rediss://user:{PASSWORD}@h/1", "rediss://user:***@h/1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (
            f"postgresql://u@h/db?sslmode=require&password={PASSWORD}",
            "postgresql://u@h/db?sslmode=require&password=***",
        ),
        (f"postgresql://u:{PASSWORD}@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown

"""``keystile webhooks create|list|get|update|delete|rotate-secret|deliveries|retry``."""

from __future__ import annotations

import json
import re

from .helpers import Shell, create_api, create_key, plain_error

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")
PRIVATE = {"KEYSTILE_WEBHOOKS_ALLOW_PRIVATE": "true"}


def test_create_shows_the_secret_once_and_the_rest_never_does(ready: Shell) -> None:
    result = ready(
        "webhooks", "create", "--url", "http://127.0.0.1:9/hook", "--event", "key.created", "--event",
        "key.revoked", "--description", "billing", env=PRIVATE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [secret] = SECRET.findall(result.stdout)
    [item] = ready.json("webhooks", "list")["items"]
    assert item["events"] == ["key.created", "key.revoked"]
    shown = ready.ok("webhooks", "get", item["id"]).stdout
    assert "billing" in shown
    assert secret not in shown + str(item)

    updated = ready.json("webhooks", "update", item["id"], "--disable", "--event", "key.deleted")
    assert updated["enabled"] is False
    assert updated["events"] == ["key.deleted"]
    rotated = ready.json("webhooks", "rotate-secret", item["id"])
    assert SECRET.fullmatch(rotated["secret"])
    assert rotated["secret"] != secret
    assert rotated["previous_secret_valid_until"] is not None
    assert "Deleted" in ready.ok("webhooks", "delete", item["id"]).stdout
    assert "No webhook endpoints." in ready.ok("webhooks", "list").stdout


def test_deliveries_and_retry_show_what_waits_in_the_outbox(ready: Shell) -> None:
    created = ready(
        "webhooks", "create", "--url", "http://127.0.0.1:9/x", "--event", "key.created", "--json", env=PRIVATE
    )
    assert created.exit_code == 0, created.output
    webhook_id = json.loads(created.stdout)["id"]
    api_id = create_api(ready)
    create_key(ready, api_id)
    [delivery] = ready.json("webhooks", "deliveries", webhook_id)["items"]
    assert delivery["type"] == "key.created"
    assert delivery["state"] == "pending"
    assert "key.created" in ready.ok("webhooks", "deliveries", webhook_id).stdout
    retried = ready.json("webhooks", "retry", webhook_id, delivery["id"])
    assert retried["id"] == delivery["id"]


def test_a_private_url_is_refused_with_its_reason(ready: Shell) -> None:
    result = ready("webhooks", "create", "--url", "http://169.254.169.254/latest", "--event", "key.created")
    assert result.exit_code != 0
    assert "private address" in plain_error(result)

-- Keystile schema v1 (SQLite). Times are integer milliseconds since the epoch; JSON columns hold text.
CREATE TABLE apis (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL,
    prefix                  TEXT NOT NULL,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    default_ratelimits      TEXT NOT NULL DEFAULT '[]',
    max_key_age_days        INTEGER,
    expire_stale_after_days INTEGER,
    recoverable             INTEGER NOT NULL DEFAULT 0,
    ip_allowlist            TEXT NOT NULL DEFAULT '[]'
);

-- The reserved API that holds root keys (SPEC K6).
INSERT INTO apis (id, name, prefix, created_at, updated_at) VALUES ('api_root', 'Keystile root keys', 'ks_root', 0, 0);

-- A balance of its own that keys and identities point to (SPEC K5, L3).
CREATE TABLE credits (
    id              TEXT PRIMARY KEY,
    remaining       INTEGER NOT NULL,
    refill_amount   INTEGER,
    refill_interval TEXT,
    refill_day      INTEGER,
    refilled_at     INTEGER,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE identities (
    id         TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL UNIQUE,
    meta       TEXT NOT NULL DEFAULT '{}',
    credit_id  TEXT REFERENCES credits (id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE keys (
    id           TEXT PRIMARY KEY,
    api_id       TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    digest       BLOB NOT NULL UNIQUE,
    start        TEXT NOT NULL,
    name         TEXT,
    owner_id     TEXT,
    meta         TEXT NOT NULL DEFAULT '{}',
    permissions  TEXT NOT NULL DEFAULT '[]',
    roles        TEXT NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    enabled      INTEGER NOT NULL DEFAULT 1,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    credit_id    TEXT REFERENCES credits (id) ON DELETE SET NULL,
    ip_allowlist TEXT NOT NULL DEFAULT '[]',
    rotated_from TEXT,
    rotated_to   TEXT,
    sealed       BLOB
);
CREATE INDEX keys_by_api ON keys (api_id, id);
CREATE INDEX keys_by_owner ON keys (owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX keys_by_credit ON keys (credit_id) WHERE credit_id IS NOT NULL;

-- Named rate limits as rows, of a key or of an identity (SPEC L1).
CREATE TABLE ratelimits (
    id          TEXT PRIMARY KEY,
    key_id      TEXT REFERENCES keys (id) ON DELETE CASCADE,
    identity_id TEXT REFERENCES identities (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    "limit"     INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    auto_apply  INTEGER NOT NULL DEFAULT 1,
    CHECK ((key_id IS NULL) <> (identity_id IS NULL))
);
CREATE UNIQUE INDEX ratelimits_key_name ON ratelimits (key_id, name) WHERE key_id IS NOT NULL;
CREATE UNIQUE INDEX ratelimits_identity_name ON ratelimits (identity_id, name) WHERE identity_id IS NOT NULL;

CREATE TABLE roles (
    api_id      TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    permissions TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (api_id, name)
);

-- Audit entries in commit order (SPEC A1); A2 will chain them by hash.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    ts         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    changes    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_target ON audit_log (target, seq);

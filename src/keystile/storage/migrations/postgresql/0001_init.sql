-- Keystile schema v1 (PostgreSQL). Times are integer milliseconds since the epoch (BIGINT), as on SQLite, so
-- both backends share their queries. Ids sort as bytes (COLLATE "C"): they are time-ordered base62.
CREATE TABLE apis (
    id                      TEXT COLLATE "C" PRIMARY KEY,
    name                    TEXT NOT NULL,
    prefix                  TEXT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    default_ratelimits      JSONB NOT NULL DEFAULT '[]',
    max_key_age_days        INTEGER,
    expire_stale_after_days INTEGER,
    recoverable             BOOLEAN NOT NULL DEFAULT FALSE,
    ip_allowlist            JSONB NOT NULL DEFAULT '[]'
);

-- The reserved API that holds root keys (SPEC K6).
INSERT INTO apis (id, name, prefix, created_at, updated_at) VALUES ('api_root', 'Keystile root keys', 'ks_root', 0, 0);

-- A balance of its own that keys and identities point to (SPEC K5, L3).
CREATE TABLE credits (
    id              TEXT COLLATE "C" PRIMARY KEY,
    remaining       BIGINT NOT NULL,
    refill_amount   BIGINT,
    refill_interval TEXT,
    refill_day      INTEGER,
    refilled_at     BIGINT,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE identities (
    id         TEXT COLLATE "C" PRIMARY KEY,
    owner_id   TEXT NOT NULL UNIQUE,
    meta       JSONB NOT NULL DEFAULT '{}',
    credit_id  TEXT COLLATE "C" REFERENCES credits (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    api_id       TEXT COLLATE "C" NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    digest       BYTEA NOT NULL UNIQUE,
    start        TEXT NOT NULL,
    name         TEXT,
    owner_id     TEXT,
    meta         JSONB NOT NULL DEFAULT '{}',
    permissions  JSONB NOT NULL DEFAULT '[]',
    roles        JSONB NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    credit_id    TEXT COLLATE "C" REFERENCES credits (id) ON DELETE SET NULL,
    ip_allowlist JSONB NOT NULL DEFAULT '[]',
    rotated_from TEXT COLLATE "C",
    rotated_to   TEXT COLLATE "C",
    sealed       BYTEA
);
CREATE INDEX keys_by_api ON keys (api_id, id);
CREATE INDEX keys_by_owner ON keys (owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX keys_by_credit ON keys (credit_id) WHERE credit_id IS NOT NULL;

-- Named rate limits as rows, of a key or of an identity (SPEC L1).
CREATE TABLE ratelimits (
    id          TEXT COLLATE "C" PRIMARY KEY,
    key_id      TEXT COLLATE "C" REFERENCES keys (id) ON DELETE CASCADE,
    identity_id TEXT COLLATE "C" REFERENCES identities (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    "limit"     BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    auto_apply  BOOLEAN NOT NULL DEFAULT TRUE,
    CHECK ((key_id IS NULL) <> (identity_id IS NULL))
);
CREATE UNIQUE INDEX ratelimits_key_name ON ratelimits (key_id, name) WHERE key_id IS NOT NULL;
CREATE UNIQUE INDEX ratelimits_identity_name ON ratelimits (identity_id, name) WHERE identity_id IS NOT NULL;

CREATE TABLE roles (
    api_id      TEXT COLLATE "C" NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    permissions JSONB NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (api_id, name)
);

-- Audit entries in commit order (SPEC A1); A2 will chain them by hash.
CREATE TABLE audit_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT COLLATE "C" NOT NULL UNIQUE,
    ts         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    changes    JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_target ON audit_log (target, seq);

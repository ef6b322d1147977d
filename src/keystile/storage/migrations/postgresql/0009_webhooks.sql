-- Outgoing webhooks (SPEC R5). An endpoint's signing secret is stored only sealed (AES-256-GCM under a data key of
-- the recoverable keys' envelope, associated data binding it to the endpoint); during a rotation's grace period the
-- previous one is kept sealed too, until prev_until.
CREATE TABLE webhook_endpoints (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    url                 TEXT NOT NULL,
    description         TEXT,
    events              TEXT NOT NULL,
    api_ids             TEXT,
    enabled             BOOLEAN NOT NULL,
    credits_low_percent INTEGER NOT NULL DEFAULT 10,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    data_key_id         TEXT NOT NULL REFERENCES data_keys (id),
    nonce               BYTEA NOT NULL,
    ciphertext          BYTEA NOT NULL,
    prev_data_key_id    TEXT REFERENCES data_keys (id),
    prev_nonce          BYTEA,
    prev_ciphertext     BYTEA,
    prev_until          BIGINT
);

-- The outbox: one message per event (written in the transaction of the change it reports), one delivery per
-- endpoint that wants it. seq orders the deliveries of one key to one endpoint; next_at is when a pending delivery
-- is due, and also its lease: a deliverer that takes one moves next_at past the time its post may take.
CREATE TABLE webhook_messages (
    id         TEXT COLLATE "C" PRIMARY KEY,
    type       TEXT NOT NULL,
    api_id     TEXT,
    order_key  TEXT NOT NULL,
    body       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_messages_by_time ON webhook_messages (created_at);

CREATE TABLE webhook_deliveries (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    endpoint_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id  TEXT COLLATE "C" NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    order_key   TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT,
    last_status INTEGER,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, order_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_message ON webhook_deliveries (message_id);

CREATE TABLE webhook_attempts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    delivery_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    status      INTEGER,
    latency_ms  BIGINT NOT NULL,
    excerpt     TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);

-- credits.low (SPEC R5): the amount a balance was last set to, of which an endpoint's credits_low_percent is the
-- threshold (a balance that refills uses its refill amount). Written with the change that sets it.
CREATE TABLE webhook_credit_bases (
    credit_id TEXT COLLATE "C" PRIMARY KEY,
    amount    BIGINT NOT NULL
);

-- The scheduler of time-driven webhook events (SPEC R5, R3): key.expiring, key.expired and key.rotation_due.
-- webhook_schedule holds its lease (name 'lease': which server scans, until when) and each scan's watermark
-- (how far in time it has looked), so that a scan reads only the keys whose time came since the last one, through
-- the indexes below. webhook_notices says which notice a key was sent, once each, written in the transaction of
-- the outbox row.
CREATE TABLE webhook_schedule (
    name      TEXT PRIMARY KEY,
    owner     TEXT,
    until     BIGINT NOT NULL DEFAULT 0,
    watermark BIGINT
);
INSERT INTO webhook_schedule (name) VALUES ('lease');

CREATE TABLE webhook_notices (
    key_id TEXT COLLATE "C" NOT NULL,
    notice TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (key_id, notice)
);

CREATE INDEX keys_by_expiry ON keys (expires_at) WHERE expires_at IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX keys_by_creation ON keys (api_id, created_at) WHERE revoked_at IS NULL;
CREATE INDEX keys_by_update ON keys (updated_at) WHERE expires_at IS NOT NULL AND revoked_at IS NULL;

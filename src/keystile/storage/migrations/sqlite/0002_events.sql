-- Verification events (SPEC O1) and their rollups (SPEC O3). Times are epoch milliseconds.
CREATE TABLE events (
    id         TEXT PRIMARY KEY,            -- evt_…, time-ordered: newest first is ORDER BY id DESC
    ts         INTEGER NOT NULL,
    request_id TEXT,
    api_id     TEXT,                        -- the key's API, else the api_id the request named, else NULL
    key_id     TEXT,                        -- NULL for NOT_FOUND
    owner_id   TEXT,
    outcome    TEXT NOT NULL,               -- a verification code (VALID, REVOKED, ...)
    ip         TEXT,
    tags       TEXT NOT NULL DEFAULT '[]',
    latency_us INTEGER NOT NULL
);
CREATE INDEX events_by_key ON events (key_id, id) WHERE key_id IS NOT NULL;
CREATE INDEX events_by_api ON events (api_id, id);
CREATE INDEX events_by_owner ON events (owner_id, id) WHERE owner_id IS NOT NULL;
CREATE INDEX events_by_ts ON events (ts);

-- Counts per time bucket, maintained as events are written: analytics never scans raw events. '' stands for
-- "none" so that the primary key can serve upserts.
CREATE TABLE event_rollups (
    granularity TEXT NOT NULL,              -- minute | hour | day
    bucket      INTEGER NOT NULL,           -- start of the bucket, epoch ms (UTC)
    api_id      TEXT NOT NULL DEFAULT '',
    key_id      TEXT NOT NULL DEFAULT '',
    owner_id    TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (granularity, bucket, api_id, key_id, owner_id, outcome)
);
CREATE INDEX rollups_by_key ON event_rollups (granularity, key_id, bucket);
CREATE INDEX rollups_by_api ON event_rollups (granularity, api_id, bucket);
CREATE INDEX rollups_by_owner ON event_rollups (granularity, owner_id, bucket);

-- Analytics (SPEC O3) filtered by key, API or owner read every column they need from the index itself (a covering
-- index: SQLite has no INCLUDE, so the other columns follow the key ones), as on PostgreSQL.
DROP INDEX rollups_by_key;
CREATE INDEX rollups_by_key ON event_rollups (granularity, key_id, bucket, api_id, owner_id, outcome, count);
DROP INDEX rollups_by_api;
CREATE INDEX rollups_by_api ON event_rollups (granularity, api_id, bucket, key_id, owner_id, outcome, count);
DROP INDEX rollups_by_owner;
CREATE INDEX rollups_by_owner ON event_rollups (granularity, owner_id, bucket, api_id, key_id, outcome, count);

-- Analytics (SPEC O3) filtered by key, API or owner read every column they need from the index itself: an
-- index-only scan instead of one heap fetch per rollup row. A key's rows are scattered over the heap (written hour
-- after hour among every other key's), so the heap fetches were most of the query: with 10,000,000 events loaded
-- (bench/load_events.py), the 30-day hourly query for the busiest key read 2,661 pages in 38 ms, and 103 pages in
-- 6 ms with these indexes (bench/analytics_query.py, bench/README.md).
DROP INDEX rollups_by_key;
CREATE INDEX rollups_by_key ON event_rollups (granularity, key_id, bucket) INCLUDE (api_id, owner_id, outcome, count);
DROP INDEX rollups_by_api;
CREATE INDEX rollups_by_api ON event_rollups (granularity, api_id, bucket) INCLUDE (key_id, owner_id, outcome, count);
DROP INDEX rollups_by_owner;
CREATE INDEX rollups_by_owner ON event_rollups (granularity, owner_id, bucket) INCLUDE (api_id, key_id, outcome, count);

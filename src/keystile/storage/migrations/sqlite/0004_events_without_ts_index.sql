-- Verification events are found by time through their id, which starts with the event's time (see
-- keystile.core.ids): retention deletes and the log's since/until filters use ranges of ids, served by the primary
-- key and the indexes that end with id. An index on ts made every event insert about a tenth dearer (SPEC P6).
DROP INDEX IF EXISTS events_by_ts;

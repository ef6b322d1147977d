-- The audit log becomes a hash chain (see keystile.core.auditchain): each entry keeps the hash of the one before it
-- and its own. Storage now gives seq itself, 1, 2, 3, ... in commit order, under the database's write lock.
-- The entries already written are chained (and numbered from 1 without gaps) by this migration's Python step,
-- keystile.storage._audit.chain_existing, in the same transaction.
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;

-- The last entry's seq and hash (and the hash before it): what the next entry follows. One row, kept by the
-- trigger below, so that removing entries from the end shows as a head past the end of the log.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    prev_hash TEXT,
    hash      TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET seq = NEW.seq, prev_hash = NEW.prev_hash, hash = NEW.hash WHERE id = 1;
END;

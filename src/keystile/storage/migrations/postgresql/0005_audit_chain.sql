-- The audit log becomes a hash chain (see keystile.core.auditchain): each entry keeps the hash of the one before it
-- and its own. Storage now gives seq itself, 1, 2, 3, ... in commit order: one statement updates the head below
-- (numbering and hashing the entry, and locking the row until the transaction ends) and inserts the entry, so
-- that several servers writing at once make one chain. The identity, which numbered in insert order (with gaps
-- from rollbacks), goes. The entries already written are chained (and numbered from 1 without gaps) by this
-- migration's Python step, keystile.storage._audit.chain_existing, in the same transaction.
ALTER TABLE audit_log ALTER COLUMN seq DROP IDENTITY;
-- json keeps the text it is given; jsonb rewrote numbers (1e100 came back as 1000..., -0.0 as 0.0), so the
-- changes read back would no longer be the ones hashed.
ALTER TABLE audit_log ALTER COLUMN changes TYPE json USING changes::json;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT COLLATE "C";
ALTER TABLE audit_log ADD COLUMN hash TEXT COLLATE "C";

-- The last entry's seq and hash (and the hash before it): what the next entry follows, and the lock every writer
-- of the log takes. One row: each append moves it in the statement that inserts the entry, so that removing
-- entries from the end shows as a head past the end of the log.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       BIGINT NOT NULL,
    prev_hash TEXT COLLATE "C",
    hash      TEXT COLLATE "C" NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

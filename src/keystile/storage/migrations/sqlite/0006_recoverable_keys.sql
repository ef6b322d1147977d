-- Recoverable keys (SPEC K3): envelope encryption. A data key is 256 random bits, stored only wrapped (nonce and
-- AES-256-GCM ciphertext) under the master key whose id is master_id; the master key itself is never stored.
CREATE TABLE data_keys (
    id         TEXT PRIMARY KEY,
    master_id  TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX data_keys_by_master ON data_keys (master_id, id);

-- A recoverable key's plain text sealed under a data key; its associated data names the key and its API, so a
-- ciphertext copied to another key's row does not open. Deleting the key deletes it.
CREATE TABLE key_secrets (
    key_id      TEXT PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
    data_key_id TEXT NOT NULL REFERENCES data_keys (id),
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL
);
CREATE INDEX key_secrets_by_data_key ON key_secrets (data_key_id);

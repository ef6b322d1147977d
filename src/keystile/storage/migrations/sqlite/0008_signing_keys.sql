-- API tokens (SPEC T2): the Ed25519 keys that sign them. The private key is stored only sealed (AES-256-GCM under
-- a data key of the recoverable keys' envelope, associated data binding it to its kid); the public key is public.
-- retired_at: when a newer key took over signing; not_after: when its last token has expired and its public key
-- leaves the JWKS.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER,
    not_after   INTEGER,
    public_key  BLOB NOT NULL,
    data_key_id TEXT NOT NULL REFERENCES data_keys (id),
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL
);

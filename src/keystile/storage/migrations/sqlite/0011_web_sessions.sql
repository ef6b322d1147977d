-- The dashboard's and the customer portal's browser sessions, and the portal's one-time sign-in links (SPEC D1,
-- D2), shared by every process of a deployment. Stored by the SHA-256 of the session id or link token (the cookie or
-- link holds the only copy); subject names a root key by its id, or a portal grant (API, owner, policy): never a key.
CREATE TABLE web_sessions (
    digest      BLOB PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX web_sessions_expires_at ON web_sessions (expires_at);

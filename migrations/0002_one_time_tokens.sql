-- Latch schema, version 2: account recovery and email verification.

-- When the address was proven to belong to the user (a verification token
-- was used); NULL until then.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;

-- The secrets of recovery and verification links, stored only as the
-- lower-case hex SHA-256 of their 32 random bytes. A token is single use
-- (used_at is set by the write that consumes it, and every consuming write
-- requires it NULL), and only the newest of a user's tokens of a purpose
-- exists: issuing one deletes the user's others of that purpose. email is
-- the address the token was sent to: verifying marks that address only.
CREATE TABLE one_time_tokens (
    hash       TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL CHECK (purpose IN ('recovery', 'verification')),
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;

CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);

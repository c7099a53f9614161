-- Latch schema, version 1.
--
-- Identifiers are random URL-safe TEXT; times are integer unix seconds.
-- Nothing relies on foreign-key enforcement (Spin and SQLite Cloud leave it
-- off by default): the application writes related rows in one transaction.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,           -- trimmed and lower-cased
    password_hash TEXT NOT NULL,                  -- argon2id PHC string
    full_name     TEXT NOT NULL,
    avatar_url    TEXT,
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE roles (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at  INTEGER NOT NULL
);

INSERT INTO roles (id, name, description, created_at) VALUES
    ('role-user', 'user', 'Every signed-up user', 0),
    ('role-admin', 'admin', 'Administrators', 0);

CREATE TABLE user_roles (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, role_id)
) WITHOUT ROWID;

-- One row per sign-in: the session is the refresh-token family. Its current
-- refresh token is stored only as a SHA-256 hash; rotating it moves the old
-- hash to retired_refresh_tokens (trigger below), so presenting an old token
-- can be recognised as reuse and the whole session revoked.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash   TEXT NOT NULL UNIQUE,
    generation     INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    client_ip      TEXT,
    user_agent     TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id, revoked_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE retired_refresh_tokens (
    hash       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    retired_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX retired_refresh_tokens_by_session ON retired_refresh_tokens (session_id);

-- Rotation is one UPDATE of sessions.refresh_hash; this keeps the old hash,
-- in the same statement, so no failure can rotate without remembering it.
CREATE TRIGGER sessions_retire_refresh_hash
AFTER UPDATE OF refresh_hash ON sessions
WHEN OLD.refresh_hash <> NEW.refresh_hash
BEGIN
    INSERT INTO retired_refresh_tokens (hash, session_id, retired_at)
    VALUES (OLD.refresh_hash, OLD.id, NEW.last_used_at);
END;

-- Sign-in attempt counters, per account (hashed email) and per client
-- address, in the database so every replica sees the same counts. An attempt
-- is counted (and the lock it earns set) before its password is checked, so
-- parallel guesses cannot all slip under the limit; a success gives it back.
-- last_attempt names the attempt that last counted, so it knows it did.
CREATE TABLE throttle (
    key               TEXT PRIMARY KEY,
    failures          INTEGER NOT NULL CHECK (failures >= 0),
    window_started_at INTEGER NOT NULL,
    locked_until      INTEGER NOT NULL DEFAULT 0,
    last_attempt      TEXT
) WITHOUT ROWID;

CREATE INDEX throttle_by_window ON throttle (window_started_at);

-- Auth events. Emails are stored masked; never passwords or tokens.
CREATE TABLE audit_events (
    id         TEXT PRIMARY KEY,
    at         INTEGER NOT NULL,
    event      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    email      TEXT,
    client_ip  TEXT,
    reason     TEXT,
    request_id TEXT
);

CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE INDEX audit_events_by_user ON audit_events (user_id, at);

-- Development only: the signing key generated on first use when none is
-- configured (environment = development). One row at most.
CREATE TABLE development_signing_key (
    slot        INTEGER PRIMARY KEY CHECK (slot = 1),
    kid         TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

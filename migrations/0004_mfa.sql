-- Latch schema, version 4: a second factor (TOTP) with recovery codes.

-- A user's TOTP factor. The secret is sealed (XChaCha20-Poly1305 under the
-- variable mfa_encryption_key, the user id as associated data). Pending until
-- confirmed_at is set by a correct code; only a confirmed factor is asked for
-- at sign-in. last_used_step is the highest 30-second step accepted: a code of
-- that step or earlier is a replay.
CREATE TABLE mfa_factors (
    user_id           TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed     TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    confirmed_at      INTEGER,
    last_used_step    INTEGER
) WITHOUT ROWID;

-- Single-use recovery codes of a confirmed factor, stored only as a keyed hash
-- (hex HMAC-SHA-256 of the user id and the normalised code, under a key derived
-- from mfa_encryption_key); used_at is set by the write that spends one.
CREATE TABLE mfa_recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, hash)
) WITHOUT ROWID;

-- Sign-ins that passed the password and wait for the second factor: the
-- hash of the challenge's random part, the sign-in attempt it belongs to, and
-- used_at, set by the one verification that opens the session.
CREATE TABLE mfa_challenges (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    attempt_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;

CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);

-- How the session's user was authenticated, carried into every access token
-- the session's refresh tokens mint: aal1 with amr 'pwd', or aal2 with
-- 'pwd otp' / 'pwd recovery'.
ALTER TABLE sessions ADD COLUMN aal TEXT NOT NULL DEFAULT 'aal1';
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';

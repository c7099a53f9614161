-- Latch schema, version 3: the admin API.

-- Who did it, when it was not the user themselves: the acting admin's user id
-- on every admin action (admin_user_updated, admin_unlock, admin_sessions_revoked).
ALTER TABLE audit_events ADD COLUMN actor_id TEXT;

-- The admin audit listing filters by event, newest first.
CREATE INDEX audit_events_by_event ON audit_events (event, at);

-- Tells every coordinator instance when a credential stops being what it was, so that
-- authentications remembered in-process (bank/auth_cache.rs) are forgotten at once: a
-- revoked API key or logged-out session stops working everywhere, whichever instance or
-- operator revoked it, including a revocation written by hand in SQL.
--
-- The payload is the credential's SHA-256 hash in hex (what the tables store), never the
-- credential. Updates of `last_used_at` alone do not notify (the WHEN clauses), so the
-- hot authentication path pays nothing for this.

CREATE FUNCTION api_keys_notify_auth() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_revoked', encode(OLD.secret_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.scopes IS DISTINCT FROM NEW.scopes
          OR OLD.account_id IS DISTINCT FROM NEW.account_id
          OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash)
    EXECUTE FUNCTION api_keys_notify_auth();
CREATE TRIGGER api_keys_deleted
    AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION api_keys_notify_auth();

CREATE FUNCTION sessions_notify_auth() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_revoked', encode(OLD.token_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_changed
    AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.staff_id IS DISTINCT FROM NEW.staff_id
          OR OLD.token_hash IS DISTINCT FROM NEW.token_hash)
    EXECUTE FUNCTION sessions_notify_auth();
CREATE TRIGGER sessions_deleted
    AFTER DELETE ON sessions FOR EACH ROW
    EXECUTE FUNCTION sessions_notify_auth();

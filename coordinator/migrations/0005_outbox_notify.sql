-- Wakes the `myUpdates` feeds of every coordinator instance when ledger postings commit.
-- One NOTIFY per statement, not per row: the ledger writes a whole batch with one
-- statement, so this costs one notification per batch. PostgreSQL delivers it at commit
-- (never for a rolled-back batch) and merges identical ones within a transaction. The
-- payload is empty: listeners read the outbox rows after the last `seq` they have seen,
-- so a notification lost with a connection loses nothing.

CREATE FUNCTION ledger_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ledger_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_outbox_notify
    AFTER INSERT ON ledger_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_outbox_notify();

-- Feeds read the ledger outbox and the deposit events in commit order. With several
-- coordinator instances writing at once, `seq` values become visible out of order (a
-- batch that drew seq 10 may commit after one that drew seq 11), so a reader that follows
-- `seq` alone could step over a row for ever. Each row now carries the id of the
-- transaction that wrote it: every transaction older than the oldest one still running
-- has ended, so a reader that only reads rows below that horizon, in (xid, seq) order,
-- never skips one (coordinator/src/commit_order.rs).
ALTER TABLE ledger_outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX ledger_outbox_commit_order ON ledger_outbox (xid, seq);

ALTER TABLE deposit_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX deposit_events_commit_order ON deposit_events (xid, seq);

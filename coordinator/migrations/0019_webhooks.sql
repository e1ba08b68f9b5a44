-- Webhooks (callback endpoints, Blink's names): the endpoints of each account, the one
-- cursor of the dispatcher over the ledger outbox, and the deliveries it fans out.

CREATE TABLE webhook_endpoints (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts (id),
    url         TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- The shared HMAC key ('whsec_' + base64), needed in clear to sign: never logged.
    secret      TEXT NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, url)
);

-- Where the dispatcher is in the ledger outbox (crate::commit_order): one row, moved in
-- the transaction that inserts the deliveries of the events it passes.
CREATE TABLE webhook_cursor (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    xid        BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    -- The snapshot the cursor started from (events visible in it are the past).
    since      TEXT NOT NULL
);
-- Starts at the migration: every transaction committed from now on is dispatched.
INSERT INTO webhook_cursor (xid, seq, since)
SELECT pg_snapshot_xmin(s)::text::bigint, 0, s::text
FROM (SELECT pg_current_snapshot() AS s) now;

-- One event for one endpoint. `seq` is drawn by the single dispatcher holding the cursor
-- row, so it follows the ledger's commit order: workers deliver an endpoint's rows by it.
CREATE TABLE webhook_deliveries (
    id               UUID PRIMARY KEY,
    seq              BIGSERIAL NOT NULL UNIQUE,
    endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id       UUID NOT NULL REFERENCES accounts (id),
    event_type       TEXT NOT NULL,
    transaction_id   UUID NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_until    TIMESTAMPTZ,
    claim            UUID,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    -- An event reaches an endpoint once, whatever happens to the dispatcher.
    UNIQUE (endpoint_id, transaction_id, event_type)
);
-- The workers' claim: the oldest pending row of each endpoint.
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, seq)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_account_idx ON webhook_deliveries (account_id);

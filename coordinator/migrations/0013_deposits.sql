-- On-chain deposits: what the deposit driver has seen of the chain, each deposit keyed by
-- its outpoint, the events `myUpdates` reads, and compliance alerts for reorgs after
-- settlement. The ledger is credited once per outpoint through its idempotent posting
-- (external id `deposit:<txid>:<vout>`); these tables only track where each deposit stands.

-- The driver's lease: one row, claimed by any coordinator instance whose lease has run out.
-- Every write of the driver locks this row and checks it still holds the lease, so a paused
-- instance that lost it cannot write over its successor.
CREATE TABLE deposit_driver (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    holder        UUID,
    lease_until   TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    -- First height to scan when no block was processed yet (the wallets' birth height).
    start_height  INT NOT NULL DEFAULT 0 CHECK (start_height >= 0),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO deposit_driver (id) VALUES (1);

-- The blocks the driver has processed, in the best chain as it last saw it: its checkpoint.
-- A reorg deletes the disconnected rows.
CREATE TABLE deposit_blocks (
    height        INT PRIMARY KEY CHECK (height >= 0),
    hash          BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per output paying one of our scripts.
--   PENDING        seen (mempool or fewer than N confirmations): pending incoming to the user
--   SETTLED        credited in the ledger (ledger_transaction_id)
--   REMOVED        gone from the mempool and the chain before settlement: pending credit removed
--   BELOW_MINIMUM  under the configured minimum: recorded, never credited, shown to operators
--   HELD           confirmed to a CLOSED account: not credited, shown to operators
--   REVERSED       settled, then taken back by an operator after a reorg (deposit_alerts)
CREATE TABLE deposits (
    id                     UUID PRIMARY KEY,
    txid                   BYTEA NOT NULL CHECK (length(txid) = 32),
    vout                   INT NOT NULL CHECK (vout >= 0),
    wallet_id              UUID NOT NULL REFERENCES wallets (id),
    account_id             UUID NOT NULL REFERENCES accounts (id),
    address                TEXT NOT NULL,
    amount_sat             BIGINT NOT NULL CHECK (amount_sat > 0 AND amount_sat <= 2100000000000000),
    state                  TEXT NOT NULL
                           CHECK (state IN ('PENDING', 'SETTLED', 'REMOVED', 'BELOW_MINIMUM', 'HELD', 'REVERSED')),
    -- The block holding it in the best chain, NULL while unconfirmed or after a reorg.
    block_height           INT,
    block_hash             BYTEA CHECK (length(block_hash) = 32),
    ledger_transaction_id  UUID,
    seen_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at             TIMESTAMPTZ,
    UNIQUE (txid, vout),
    CHECK ((block_height IS NULL) = (block_hash IS NULL)),
    CHECK ((state IN ('SETTLED', 'REVERSED')) = (ledger_transaction_id IS NOT NULL))
);
CREATE INDEX deposits_wallet_idx ON deposits (wallet_id, seen_at DESC);
CREATE INDEX deposits_address_idx ON deposits (address);
CREATE INDEX deposits_block_idx ON deposits (block_height) WHERE block_height IS NOT NULL;
CREATE INDEX deposits_ledger_tx_idx ON deposits (ledger_transaction_id)
    WHERE ledger_transaction_id IS NOT NULL;
CREATE INDEX deposits_open_idx ON deposits (state) WHERE state IN ('PENDING', 'HELD', 'BELOW_MINIMUM');

-- What `myUpdates` shows: written in the same transaction as the state change it announces.
CREATE TABLE deposit_events (
    seq         BIGSERIAL PRIMARY KEY,
    deposit_id  UUID NOT NULL REFERENCES deposits (id),
    wallet_id   UUID NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('PENDING', 'SETTLED', 'REMOVED')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One NOTIFY per statement at commit, as the ledger outbox (migration 0005): listeners read
-- the rows after the last `seq` they have seen.
CREATE FUNCTION deposit_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('deposit_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER deposit_events_notify
    AFTER INSERT ON deposit_events
    FOR EACH STATEMENT EXECUTE FUNCTION deposit_events_notify();

-- Reorgs that touched a settled deposit: never ignored. An operator reverses the credit
-- (a new ledger posting, `deposit-reversal:<txid>:<vout>`) or dismisses the alert (the
-- transaction was mined again), with who and why.
CREATE TABLE deposit_alerts (
    id                       UUID PRIMARY KEY,
    deposit_id               UUID NOT NULL REFERENCES deposits (id),
    kind                     TEXT NOT NULL CHECK (kind IN ('REORGED_AFTER_SETTLEMENT')),
    -- The block the deposit was in when it was settled and that left the best chain.
    block_height             INT NOT NULL,
    block_hash               BYTEA NOT NULL CHECK (length(block_hash) = 32),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolution               TEXT CHECK (resolution IN ('REVERSED', 'DISMISSED')),
    resolved_by              TEXT,
    resolution_reason        TEXT,
    resolved_at              TIMESTAMPTZ,
    reversal_transaction_id  UUID,
    UNIQUE (deposit_id, block_hash),
    CHECK ((resolution IS NULL) = (resolved_at IS NULL)),
    CHECK ((resolution = 'REVERSED') = (reversal_transaction_id IS NOT NULL))
);
CREATE INDEX deposit_alerts_open_idx ON deposit_alerts (created_at) WHERE resolution IS NULL;

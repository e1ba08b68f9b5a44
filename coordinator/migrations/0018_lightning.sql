-- Lightning: invoices the bank hands out, payments it sends, and where it has read its
-- node's settlements up to. The ledger holds the money; these rows hold the state
-- machines around it (bank/lightning/).

-- An invoice of the bank's node, made for one wallet. Credited once, keyed by payment
-- hash: the ledger posting's external id is `lnrecv:<hash>`.
CREATE TABLE ln_invoices (
    payment_hash     BYTEA PRIMARY KEY CHECK (length(payment_hash) = 32),
    wallet_id        UUID NOT NULL REFERENCES wallets (id),
    payment_request  TEXT NOT NULL,
    payment_secret   BYTEA NOT NULL CHECK (length(payment_secret) = 32),
    -- NULL: the payer chooses the amount.
    amount_msats     BIGINT CHECK (amount_msats > 0),
    memo             TEXT NOT NULL DEFAULT '',
    -- The creator's own reference (Blink's externalId), unique per wallet.
    external_id      TEXT NOT NULL CHECK (length(external_id) BETWEEN 1 AND 100),
    -- PENDING: payable. PAID: credited (or being credited). CANCELLED: never payable.
    -- An expired PENDING invoice reads as EXPIRED.
    status           TEXT NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'PAID', 'CANCELLED')),
    -- How it was paid: over Lightning, or inside the bank by another wallet.
    paid_via         TEXT CHECK (paid_via IN ('LIGHTNING', 'INTRALEDGER')),
    paid_msats       BIGINT CHECK (paid_msats > 0),
    preimage         BYTEA CHECK (length(preimage) = 32),
    transaction_id   UUID,
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    paid_at          TIMESTAMPTZ,
    UNIQUE (wallet_id, external_id),
    CHECK ((status = 'PAID') = (paid_via IS NOT NULL))
);
CREATE INDEX ln_invoices_wallet_idx ON ln_invoices (wallet_id, created_at DESC, payment_hash);

-- A payment out over Lightning, or to an invoice of the bank's own node (settled inside
-- the ledger). One live attempt per invoice: the same invoice is never paid twice, from
-- any wallet; after a FAILURE it may be tried again.
CREATE TABLE ln_payments (
    id                  UUID PRIMARY KEY,
    payment_hash        BYTEA NOT NULL CHECK (length(payment_hash) = 32),
    account_id          UUID NOT NULL REFERENCES accounts (id),
    wallet_id           UUID NOT NULL REFERENCES wallets (id),
    payment_request     TEXT NOT NULL,
    amount_msats        BIGINT NOT NULL CHECK (amount_msats > 0),
    -- Held with the amount before the node is called; the unused part is returned.
    fee_reserve_msats   BIGINT NOT NULL CHECK (fee_reserve_msats >= 0),
    fee_msats           BIGINT CHECK (fee_msats >= 0 AND fee_msats <= fee_reserve_msats),
    memo                TEXT NOT NULL DEFAULT '',
    -- Set for an invoice of the bank's own node: the wallet it credits.
    internal_recipient  UUID REFERENCES wallets (id),
    status              TEXT NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'SUCCESS', 'FAILURE')),
    failure_reason      TEXT,
    preimage            BYTEA CHECK (length(preimage) = 32),
    transaction_id      UUID,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,
    -- The reconciler's lease: an instance that claims the row sets it ahead.
    next_check_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'FAILURE') = (failure_reason IS NOT NULL))
);
CREATE UNIQUE INDEX ln_payments_live_hash ON ln_payments (payment_hash) WHERE status <> 'FAILURE';
CREATE INDEX ln_payments_pending_idx ON ln_payments (next_check_at) WHERE status = 'PENDING';
CREATE INDEX ln_payments_account_idx ON ln_payments (account_id, created_at);
CREATE INDEX ln_payments_hash_idx ON ln_payments (payment_hash);

-- How far the bank has read its node's settlements (the node's own durable cursor).
CREATE TABLE ln_settle_cursor (
    node_pubkey TEXT PRIMARY KEY,
    cursor      BIGINT NOT NULL CHECK (cursor >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

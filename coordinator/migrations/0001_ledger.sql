-- The double-entry ledger: journals, accounts, balances, transactions, entries, outbox.
--
-- Amounts are BIGINT in the currency's ledger unit (millisatoshi for BTC), never floats.
-- Balances are stored in the account's normal direction: a credit-normal account (a user
-- wallet, a liability of the bank) goes up with credits, a debit-normal account (an asset
-- such as the on-chain omnibus wallet) goes up with debits.

CREATE TABLE ledger_journals (
    id          UUID PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9_.-]{1,64}$'),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ledger_accounts (
    id              UUID PRIMARY KEY,
    -- Well-known code for system and omnibus accounts; NULL for user wallets.
    code            TEXT UNIQUE CHECK (code ~ '^[a-z0-9_.-]{1,64}$'),
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('user', 'omnibus', 'system')),
    normal_balance  TEXT NOT NULL CHECK (normal_balance IN ('debit', 'credit')),
    currency        TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3,4}$'),
    -- User wallets may never go below zero; omnibus and system accounts may.
    allow_negative  BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind <> 'user' OR NOT allow_negative)
);

-- One row per account. `allow_negative` is copied from the account so that the database
-- itself refuses a negative user balance, whatever the application computed.
CREATE TABLE ledger_balances (
    account_id          UUID PRIMARY KEY REFERENCES ledger_accounts (id),
    currency            TEXT NOT NULL,
    allow_negative      BOOLEAN NOT NULL,
    settled             BIGINT NOT NULL DEFAULT 0,
    pending             BIGINT NOT NULL DEFAULT 0,
    version             BIGINT NOT NULL DEFAULT 0 CHECK (version >= 0),
    last_transaction_id UUID,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (allow_negative OR (settled >= 0 AND settled + pending >= 0))
);

-- Foreign keys. The posting path writes transactions, entries and outbox rows without
-- foreign keys to journals, transactions and accounts: each would cost a trigger call per
-- row (measured: about 40% of the batch statement's time). The writer only posts to
-- journals and accounts it has read from this database, accounts and journals are never
-- deleted, and `verify` reports any orphan. Balances keep their foreign key (they are
-- written when an account is created, not when posting).

CREATE TABLE ledger_transactions (
    id           UUID PRIMARY KEY,
    journal_id   UUID NOT NULL,
    -- Caller-supplied idempotency key: posting it again returns this row.
    external_id  TEXT NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 200),
    -- SHA-256 of the posting's canonical content, to tell a replay from a different posting
    -- that reuses an external id.
    fingerprint  BYTEA NOT NULL CHECK (length(fingerprint) = 32),
    description  TEXT NOT NULL DEFAULT '',
    metadata     JSONB,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE ledger_entries (
    transaction_id  UUID NOT NULL,
    seq             SMALLINT NOT NULL CHECK (seq >= 0),
    account_id      UUID NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
    layer           TEXT NOT NULL CHECK (layer IN ('settled', 'pending')),
    currency        TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    PRIMARY KEY (transaction_id, seq)
);

-- History per account, newest first (transaction ids are UUIDv7, ordered by time).
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, transaction_id DESC);

-- Written in the same statement as the postings it announces.
CREATE TABLE ledger_outbox (
    seq             BIGSERIAL PRIMARY KEY,
    event_type      TEXT NOT NULL,
    transaction_id  UUID NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The books are append-only: transactions, entries and journals are never changed or
-- removed once written (a correction is a new, reversing transaction).
CREATE FUNCTION ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'P0002';
END;
$$;

CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_accounts_no_delete
    BEFORE DELETE OR TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_journals_no_delete
    BEFORE DELETE OR TRUNCATE ON ledger_journals
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Raises when `ok` is false: lets a single statement abort itself (and so write nothing)
-- when one of its data-modifying parts touched fewer rows than expected.
CREATE FUNCTION ledger_assert(ok BOOLEAN, message TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'ledger assertion failed: %', message USING ERRCODE = 'P0001';
    END IF;
    RETURN TRUE;
END;
$$;

-- Bootstrap: the main journal and the bank's system and omnibus accounts. The ids are fixed
-- UUIDv7 values so that code can name them without a lookup.
INSERT INTO ledger_journals (id, code, name) VALUES
    ('01900000-0000-7000-8000-000000000001', 'main', 'Main journal');

INSERT INTO ledger_accounts (id, code, name, kind, normal_balance, currency, allow_negative) VALUES
    ('01900000-0000-7000-8000-000000000101', 'bank.onchain', 'Bank on-chain assets (omnibus)', 'omnibus', 'debit', 'BTC', TRUE),
    ('01900000-0000-7000-8000-000000000102', 'bank.lightning', 'Bank Lightning assets (omnibus)', 'omnibus', 'debit', 'BTC', TRUE),
    ('01900000-0000-7000-8000-000000000103', 'bank.fees', 'Fee revenue', 'system', 'credit', 'BTC', TRUE),
    ('01900000-0000-7000-8000-000000000104', 'bank.equity', 'Bank equity', 'system', 'credit', 'BTC', TRUE);

INSERT INTO ledger_balances (account_id, currency, allow_negative)
SELECT id, currency, allow_negative FROM ledger_accounts;

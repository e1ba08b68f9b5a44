-- Users, accounts, wallets, one-time codes, sessions, API keys, staff, and the audit trail
-- of account status and level changes. Secrets (passwords, codes, tokens, API keys) are
-- stored only as hashes.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    -- Lower-cased e-mail address, or an E.164 phone number: at least one.
    email           TEXT UNIQUE,
    phone           TEXT UNIQUE,
    password_hash   TEXT NOT NULL,
    verified_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (email IS NOT NULL OR phone IS NOT NULL)
);

CREATE TABLE accounts (
    id                  UUID PRIMARY KEY,
    user_id             UUID NOT NULL UNIQUE REFERENCES users (id),
    -- Lower-case, unique, payable.
    username            TEXT UNIQUE CHECK (username ~ '^[a-z][a-z0-9_]{2,49}$'),
    level               SMALLINT NOT NULL DEFAULT 0 CHECK (level BETWEEN 0 AND 3),
    status              TEXT NOT NULL DEFAULT 'ACTIVE'
                        CHECK (status IN ('ACTIVE', 'LOCKED', 'CLOSED')),
    default_wallet_id   UUID,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A wallet is a user-facing view of one ledger account (same id).
CREATE TABLE wallets (
    id          UUID PRIMARY KEY REFERENCES ledger_accounts (id),
    account_id  UUID NOT NULL REFERENCES accounts (id),
    currency    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX wallets_account_idx ON wallets (account_id);

ALTER TABLE accounts ADD CONSTRAINT accounts_default_wallet_fk
    FOREIGN KEY (default_wallet_id) REFERENCES wallets (id) DEFERRABLE INITIALLY DEFERRED;

-- Who changed an account's status or level, when and why.
CREATE TABLE account_events (
    id          BIGSERIAL PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts (id),
    kind        TEXT NOT NULL CHECK (kind IN ('status', 'level')),
    old_value   TEXT NOT NULL,
    new_value   TEXT NOT NULL,
    -- 'user:<id>', 'staff:<id>' or 'system'.
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_events_account_idx ON account_events (account_id, id);

CREATE TABLE one_time_codes (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id),
    purpose      TEXT NOT NULL CHECK (purpose IN ('verify', 'login')),
    code_hash    BYTEA NOT NULL,
    attempts     INT NOT NULL DEFAULT 0,
    expires_at   TIMESTAMPTZ NOT NULL,
    consumed_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX one_time_codes_user_idx ON one_time_codes (user_id, purpose, created_at DESC);

-- The development and test Notifier: messages land here instead of being sent.
CREATE TABLE notification_outbox (
    id          BIGSERIAL PRIMARY KEY,
    channel     TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id          UUID PRIMARY KEY,
    -- Exactly one of user_id and staff_id.
    user_id     UUID REFERENCES users (id),
    staff_id    UUID,
    token_hash  BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    CHECK ((user_id IS NULL) <> (staff_id IS NULL))
);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    account_id   UUID NOT NULL REFERENCES accounts (id),
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes       TEXT[] NOT NULL CHECK (scopes <@ ARRAY['read', 'receive', 'write']
                                        AND cardinality(scopes) > 0),
    secret_hash  BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

CREATE TABLE staff (
    id             UUID PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('support', 'compliance', 'treasury', 'admin')),
    disabled_at    TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE sessions ADD CONSTRAINT sessions_staff_fk
    FOREIGN KEY (staff_id) REFERENCES staff (id);

-- Internal transfers: the payment's own state, moved on after its ledger posting (whose
-- external id is 'intraledger:<payment id>'); a PENDING row is resumed after a crash.
CREATE TABLE intraledger_payments (
    id                   UUID PRIMARY KEY,
    sender_account_id    UUID NOT NULL REFERENCES accounts (id),
    sender_wallet_id     UUID NOT NULL REFERENCES wallets (id),
    recipient_wallet_id  UUID NOT NULL REFERENCES wallets (id),
    amount_sats          BIGINT NOT NULL CHECK (amount_sats > 0),
    memo                 TEXT NOT NULL DEFAULT '' CHECK (length(memo) <= 1000),
    idempotency_key      TEXT CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    status               TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCESS', 'FAILURE')),
    failure_reason       TEXT,
    transaction_id       UUID REFERENCES ledger_transactions (id),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (sender_account_id, idempotency_key)
);
-- Rolling 24 h limit sums.
CREATE INDEX intraledger_payments_window_idx ON intraledger_payments (sender_account_id, created_at)
    WHERE status <> 'FAILURE';

-- The signer's own store: clients, registered policies, signing requests, the velocity
-- ledger, used change indexes and the hash-chained audit log.
--
-- Amounts are BIGINT satoshis with CHECKs, never floats. Nothing here is a secret: client
-- tokens are stored as their SHA-256 only.

CREATE TABLE signer_clients (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    token_sha256  BYTEA NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    -- The policy ids (64 hex digits) this client may submit to.
    policies      TEXT[] NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE signer_policies (
    id          TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    -- The policy document exactly as registered (its id is the hash of its content).
    document    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per policy, locked (FOR UPDATE) by every signing of that policy: the velocity
-- read, the decision and the ledger write happen under this lock, in one transaction.
CREATE TABLE signer_policy_state (
    policy_id             TEXT PRIMARY KEY REFERENCES signer_policies (id),
    -- Highest derivation index of each keychain seen in a signed request (-1: none).
    highest_receive_index BIGINT NOT NULL DEFAULT -1
        CHECK (highest_receive_index >= -1 AND highest_receive_index < 2147483648),
    highest_change_index  BIGINT NOT NULL DEFAULT -1
        CHECK (highest_change_index >= -1 AND highest_change_index < 2147483648)
);

CREATE TABLE signer_requests (
    id                UUID PRIMARY KEY,
    client_id         UUID NOT NULL REFERENCES signer_clients (id),
    idempotency_key   TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    -- SHA-256 of the canonical request body: same key + other body is a conflict.
    body_sha256       BYTEA NOT NULL CHECK (octet_length(body_sha256) = 32),
    policy_id         TEXT NOT NULL REFERENCES signer_policies (id),
    purpose           TEXT NOT NULL,
    psbt_in           TEXT NOT NULL,
    unsigned_txid     TEXT,
    analysis          JSONB,
    analysis_sha256   BYTEA,
    status            TEXT NOT NULL CHECK (status IN ('pending_approval', 'signed', 'refused')),
    refusal_code      TEXT,
    refusal_message   TEXT,
    rule_outcomes     JSONB NOT NULL DEFAULT '[]',
    signed_psbt       TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Two identical requests at once: the second waits on this index, then replays.
    UNIQUE (client_id, idempotency_key),
    CHECK ((status = 'signed') = (signed_psbt IS NOT NULL)),
    CHECK ((status = 'refused') = (refusal_code IS NOT NULL))
);
CREATE INDEX signer_requests_status ON signer_requests (status, created_at, id);

-- Value leaving a policy (payouts plus fee), one row per payment. A replacement (RBF) of a
-- signed payment (same payouts, spending at least one of the same inputs) updates that row
-- to the higher value instead of adding one, so it counts once.
CREATE TABLE signer_velocity (
    id                   UUID PRIMARY KEY,
    policy_id            TEXT NOT NULL REFERENCES signer_policies (id),
    payout_fingerprint   BYTEA NOT NULL CHECK (octet_length(payout_fingerprint) = 32),
    -- Every outpoint spent by the payment or any of its replacements.
    inputs               TEXT[] NOT NULL,
    value_out_sat        BIGINT NOT NULL CHECK (value_out_sat >= 0),
    first_request_id     UUID NOT NULL REFERENCES signer_requests (id),
    last_request_id      UUID NOT NULL REFERENCES signer_requests (id),
    signed_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX signer_velocity_window ON signer_velocity (policy_id, signed_at);
CREATE INDEX signer_velocity_payouts ON signer_velocity (policy_id, payout_fingerprint);

-- The append-only audit log: hash = SHA-256(prev_hash || canonical JSON of {seq, kind, body}).
CREATE TABLE signer_audit (
    seq         BIGINT PRIMARY KEY CHECK (seq >= 1),
    prev_hash   BYTEA NOT NULL CHECK (octet_length(prev_hash) = 32),
    kind        TEXT NOT NULL,
    -- The canonical JSON text that was hashed (kept as text: JSONB would re-order it).
    body        TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The chain's head, one row, locked by every append so that seq and prev_hash never race.
CREATE TABLE signer_audit_head (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    seq       BIGINT NOT NULL,
    hash      BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);
INSERT INTO signer_audit_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- Append-only: updates and deletes of audit records are refused by the database itself.
CREATE FUNCTION signer_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'signer_audit is append-only';
END;
$$;
CREATE TRIGGER signer_audit_no_update BEFORE UPDATE OR DELETE ON signer_audit
    FOR EACH ROW EXECUTE FUNCTION signer_audit_append_only();

-- Treasury officers, their approvals of signing requests, and policy changes with the
-- officers' approvals of them (ADR 0007). Nothing here is a secret: officers are known by
-- their public keys, approvals are signatures anyone may verify.

-- Governance settings from the ceremony file: the quorum of officers a loosening change or
-- a revocation needs, and how long a loosening change waits before it may take effect.
CREATE TABLE signer_governance (
    only_row              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    instance              TEXT NOT NULL CHECK (length(instance) BETWEEN 1 AND 64),
    change_quorum         INTEGER NOT NULL CHECK (change_quorum >= 1),
    loosening_delay_secs  BIGINT NOT NULL CHECK (loosening_delay_secs >= 0),
    bootstrapped_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE signer_officers (
    -- The compressed secp256k1 public key, lower-case hex: the officer's id.
    id           TEXT PRIMARY KEY CHECK (id ~ '^0[23][0-9a-f]{64}$'),
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    -- The API client this officer also acts as: never approves what it initiated.
    client_name  TEXT,
    -- The policy change that added the officer; NULL for the ceremony file.
    added_by     UUID,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ,
    revoked_by   UUID,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

-- One approval per officer and request: the primary key makes the same officer count once.
CREATE TABLE signer_approvals (
    request_id  UUID NOT NULL REFERENCES signer_requests (id),
    officer_id  TEXT NOT NULL REFERENCES signer_officers (id),
    -- Compact r || s, low-S.
    signature   BYTEA NOT NULL CHECK (octet_length(signature) = 64),
    -- Unix seconds, as signed.
    expires_at  BIGINT NOT NULL CHECK (expires_at > 0),
    -- The approval exactly as verified (JSON).
    approval    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, officer_id)
);

CREATE TABLE signer_policy_changes (
    id               UUID PRIMARY KEY,
    proposed_by      TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    kind             TEXT NOT NULL
        CHECK (kind IN ('policy', 'add_officer', 'revoke_officer')),
    direction        TEXT NOT NULL CHECK (direction IN ('tightening', 'loosening')),
    -- The canonical document, as hashed and as officers sign its hash.
    document         TEXT NOT NULL,
    document_sha256  BYTEA NOT NULL CHECK (octet_length(document_sha256) = 32),
    -- Officers needed (0: a tightening that takes effect at once).
    quorum           INTEGER NOT NULL CHECK (quorum >= 0),
    -- Earliest time it may take effect (proposal + delay for a loosening).
    not_before       TIMESTAMPTZ NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'effective', 'failed')),
    -- Why a change that reached its quorum could not be applied.
    failure          TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    effective_at     TIMESTAMPTZ,
    UNIQUE (proposed_by, idempotency_key),
    CHECK ((status = 'effective') = (effective_at IS NOT NULL)),
    CHECK ((status = 'failed') = (failure IS NOT NULL))
);
CREATE INDEX signer_policy_changes_status ON signer_policy_changes (status, created_at, id);

CREATE TABLE signer_change_approvals (
    change_id   UUID NOT NULL REFERENCES signer_policy_changes (id),
    officer_id  TEXT NOT NULL REFERENCES signer_officers (id),
    signature   BYTEA NOT NULL CHECK (octet_length(signature) = 64),
    expires_at  BIGINT NOT NULL CHECK (expires_at > 0),
    approval    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (change_id, officer_id)
);

-- Stored responses of REST POST requests, keyed by the caller's account and its
-- Idempotency-Key header: a repeated request gets the stored response back and changes
-- nothing. A row without a response is a request in progress; one left behind by a crash
-- is taken over after a minute (the operations behind it are idempotent themselves).
-- Responses that carried a secret (a new API key) are stored with the secret removed.

CREATE TABLE api_idempotency (
    account_id       UUID NOT NULL REFERENCES accounts (id),
    idempotency_key  TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    -- SHA-256 of method, path and body: the same key with another request is refused.
    request_hash     BYTEA NOT NULL,
    response_status  SMALLINT,
    response_body    JSONB,
    claimed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    PRIMARY KEY (account_id, idempotency_key),
    CHECK ((response_status IS NULL) = (completed_at IS NULL))
);

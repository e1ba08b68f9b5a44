-- The bank's on-chain wallets: watch-only bdk wallets over policy documents (no private key).
-- The row is the wallet's lock: every change (an address revealed, a block applied) runs in a
-- transaction that holds it with SELECT ... FOR UPDATE, so one coordinator instance at a time
-- writes a wallet. It holds the next address index of each keychain; bdk's state is the merge,
-- in seq order, of the wallet's changesets (bdk_wallet's serde ChangeSet as JSONB).
CREATE TABLE onchain_wallets (
    id                  UUID PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    role                TEXT NOT NULL CHECK (role IN ('hot', 'cold')),
    -- The policy document exactly as registered, and its content hash.
    policy_id           TEXT NOT NULL CHECK (policy_id ~ '^[0-9a-f]{64}$'),
    policy_json         TEXT NOT NULL,
    network             TEXT NOT NULL,
    next_receive_index  INT NOT NULL DEFAULT 0 CHECK (next_receive_index >= 0),
    next_change_index   INT NOT NULL DEFAULT 0 CHECK (next_change_index >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE onchain_wallet_changesets (
    wallet_id   UUID NOT NULL REFERENCES onchain_wallets (id),
    -- 1, 2, ... per wallet, written under the wallet row's lock.
    seq         BIGINT NOT NULL CHECK (seq > 0),
    changeset   JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (wallet_id, seq)
);

-- Every script the bank has revealed, and whose it is. Blocks are scanned against this table:
-- a block's output scripts are looked up in one indexed query, so the cost of a block does not
-- grow with the number of addresses ever handed out. The primary key makes a script belong to
-- one wallet index and at most one account, for ever.
CREATE TABLE onchain_scripts (
    script_pubkey     BYTEA PRIMARY KEY,
    wallet_id         UUID NOT NULL REFERENCES onchain_wallets (id),
    keychain          TEXT NOT NULL CHECK (keychain IN ('receive', 'change')),
    derivation_index  INT NOT NULL CHECK (derivation_index >= 0),
    -- The customer account the address was handed to; NULL for the bank's own (change).
    account_id        UUID REFERENCES accounts (id),
    address           TEXT NOT NULL UNIQUE,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (wallet_id, keychain, derivation_index),
    CHECK (account_id IS NULL OR keychain = 'receive')
);
-- An account's addresses, newest last (current = highest index).
CREATE INDEX onchain_scripts_account_idx
    ON onchain_scripts (account_id, wallet_id, derivation_index)
    WHERE account_id IS NOT NULL;

-- The rolling 24-hour internal-send limit comes from a running window per account, not
-- from summing the sender's payments of the last 24 hours on every send (which made a
-- busy sender's every payment scan thousands of rows: the payment path's largest cost).
--
-- Invariant, under the account row lock: `internal_sent_window` is the sum of the
-- account's non-FAILURE payments created after `internal_window_from`. A send first moves
-- `internal_window_from` up to now - 24 h, subtracting the payments it passes; a FAILURE
-- subtracts its own amount if it is still inside (bank/payments.rs). `Bank::limits` still
-- sums the payments directly, and a test holds the two equal.
ALTER TABLE accounts
    ADD COLUMN internal_sent_window BIGINT NOT NULL DEFAULT 0
        CHECK (internal_sent_window >= 0),
    ADD COLUMN internal_window_from TIMESTAMPTZ NOT NULL DEFAULT '-infinity';

-- Existing accounts start from their payments of the last 24 hours.
UPDATE accounts a SET internal_window_from = now() - interval '24 hours',
    internal_sent_window = coalesce((
        SELECT sum(amount_sats) FROM intraledger_payments p
        WHERE p.sender_account_id = a.id AND p.status <> 'FAILURE'
          AND p.created_at > now() - interval '24 hours'), 0);

-- The first step of an internal payment in one round trip and one commit.
--
-- Every statement of a VOLATILE PL/pgSQL function takes a fresh snapshot (READ COMMITTED),
-- so the reads after the account lock see every payment committed by the previous holder
-- of that lock: the rolling limit cannot be raced. Before this function the same checks
-- took BEGIN, a locking SELECT, the insert and COMMIT: four round trips per payment.
--
-- The reserve commits without waiting for its WAL flush (synchronous_commit off for this
-- transaction only). That loses nothing: the payment is paid only by its ledger posting,
-- which commits later with a synchronous commit, and flushing that commit record flushes
-- all WAL before it, this reserve included. A crash before the posting may lose the
-- PENDING row, but then nothing was paid and nobody was told it was: the payer's retry
-- reserves again. A FAILURE is recorded synchronously (bank/payments.rs) because the
-- payer is told about it. See docs/adr/0003-payment-reserve-commit.md.
--
-- Outcomes: INSERTED (a PENDING row was written), EXISTING (the idempotency key was used
-- before: that payment is returned), WALLET_NOT_FOUND, NOT_ACTIVE, RECIPIENT_NOT_FOUND,
-- RECIPIENT_CLOSED, LIMIT. Nothing is written unless the outcome is INSERTED.
CREATE FUNCTION intraledger_reserve(
    p_id          UUID,
    p_account     UUID,
    p_wallet      UUID,
    p_recipient   UUID,
    p_amount      BIGINT,
    p_memo        TEXT,
    p_key         TEXT,
    -- The internal-send limit of each level, indexed by level + 1.
    p_limits      BIGINT[]
) RETURNS TABLE (
    outcome              TEXT,
    account_status       TEXT,
    used                 BIGINT,
    send_limit           BIGINT,
    existing_id          UUID,
    existing_sender      UUID,
    existing_recipient   UUID,
    existing_amount      BIGINT,
    existing_memo        TEXT,
    existing_status      TEXT,
    existing_transaction UUID,
    existing_failure     TEXT
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- The clock, read under the account lock, so an account's payments are stamped in
    -- the order they pass the lock.
    v_now TIMESTAMPTZ;
    v_window_start TIMESTAMPTZ;
    v_from TIMESTAMPTZ;
    v_status TEXT;
    v_level SMALLINT;
    v_recipient_status TEXT;
    v_used BIGINT;
    v_limit BIGINT;
    e intraledger_payments%ROWTYPE;
BEGIN
    SELECT a.status, a.level, a.internal_sent_window, a.internal_window_from
    INTO v_status, v_level, v_used, v_from
    FROM accounts a JOIN wallets w ON w.account_id = a.id
    WHERE w.id = p_wallet AND a.id = p_account
    FOR UPDATE OF a;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'WALLET_NOT_FOUND', NULL::TEXT, NULL::BIGINT, NULL::BIGINT,
            NULL::UUID, NULL::UUID, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT,
            NULL::UUID, NULL::TEXT;
        RETURN;
    END IF;

    -- A replay answers with the first outcome, whatever the account's state is now.
    IF p_key IS NOT NULL THEN
        SELECT * INTO e FROM intraledger_payments
        WHERE sender_account_id = p_account AND idempotency_key = p_key;
        IF FOUND THEN
            RETURN QUERY SELECT 'EXISTING', v_status, NULL::BIGINT, NULL::BIGINT,
                e.id, e.sender_wallet_id, e.recipient_wallet_id, e.amount_sats, e.memo,
                e.status, e.transaction_id, e.failure_reason;
            RETURN;
        END IF;
    END IF;

    IF v_status <> 'ACTIVE' THEN
        RETURN QUERY SELECT 'NOT_ACTIVE', v_status, NULL::BIGINT, NULL::BIGINT,
            NULL::UUID, NULL::UUID, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT,
            NULL::UUID, NULL::TEXT;
        RETURN;
    END IF;

    SELECT a.status INTO v_recipient_status
    FROM accounts a JOIN wallets w ON w.account_id = a.id
    WHERE w.id = p_recipient;
    IF NOT FOUND OR v_recipient_status = 'CLOSED' THEN
        RETURN QUERY SELECT CASE WHEN v_recipient_status IS NULL THEN 'RECIPIENT_NOT_FOUND'
                                 ELSE 'RECIPIENT_CLOSED' END,
            v_status, NULL::BIGINT, NULL::BIGINT,
            NULL::UUID, NULL::UUID, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT,
            NULL::UUID, NULL::TEXT;
        RETURN;
    END IF;

    v_limit := p_limits[v_level + 1];
    IF v_limit IS NULL THEN
        RAISE EXCEPTION 'no internal-send limit for level %', v_level;
    END IF;
    -- The running window: take out what left it since the last payment (each payment is
    -- added once and taken out once, so the cost does not grow with the sender's volume).
    v_now := clock_timestamp();
    v_window_start := v_now - interval '24 hours';
    IF v_window_start > v_from THEN
        v_used := v_used - (
            SELECT coalesce(sum(amount_sats), 0)::BIGINT FROM intraledger_payments
            WHERE sender_account_id = p_account AND status <> 'FAILURE'
              AND created_at > v_from AND created_at <= v_window_start);
        v_from := v_window_start;
    END IF;
    IF v_used + p_amount > v_limit THEN
        RETURN QUERY SELECT 'LIMIT', v_status, v_used, v_limit,
            NULL::UUID, NULL::UUID, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT,
            NULL::UUID, NULL::TEXT;
        RETURN;
    END IF;

    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE accounts SET internal_sent_window = v_used + p_amount, internal_window_from = v_from
    WHERE id = p_account;
    INSERT INTO intraledger_payments (id, sender_account_id, sender_wallet_id,
        recipient_wallet_id, amount_sats, memo, idempotency_key, status, created_at)
    VALUES (p_id, p_account, p_wallet, p_recipient, p_amount, p_memo, p_key, 'PENDING', v_now);
    RETURN QUERY SELECT 'INSERTED', v_status, v_used, v_limit,
        NULL::UUID, NULL::UUID, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT,
        NULL::UUID, NULL::TEXT;
END
$$;


-- The window sum reads only the index (amounts included), not the table.
DROP INDEX intraledger_payments_window_idx;
CREATE INDEX intraledger_payments_window_idx
    ON intraledger_payments (sender_account_id, created_at) INCLUDE (amount_sats)
    WHERE status <> 'FAILURE';

-- Rows that were posted but whose SUCCESS was not yet recorded (see the settler in
-- bank/payments.rs) are found by this index when the coordinator starts.
CREATE INDEX intraledger_payments_pending_idx ON intraledger_payments (id)
    WHERE status = 'PENDING';

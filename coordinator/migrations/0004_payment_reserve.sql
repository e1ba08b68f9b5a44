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
    v_status TEXT;
    v_level SMALLINT;
    v_recipient_status TEXT;
    v_used BIGINT;
    v_limit BIGINT;
    e intraledger_payments%ROWTYPE;
BEGIN
    SELECT a.status, a.level INTO v_status, v_level
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
    SELECT coalesce(sum(amount_sats), 0)::BIGINT INTO v_used
    FROM intraledger_payments
    WHERE sender_account_id = p_account AND status <> 'FAILURE'
      AND created_at > now() - interval '24 hours';
    IF v_used + p_amount > v_limit THEN
        RETURN QUERY SELECT 'LIMIT', v_status, v_used, v_limit,
            NULL::UUID, NULL::UUID, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT,
            NULL::UUID, NULL::TEXT;
        RETURN;
    END IF;

    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO intraledger_payments (id, sender_account_id, sender_wallet_id,
        recipient_wallet_id, amount_sats, memo, idempotency_key, status)
    VALUES (p_id, p_account, p_wallet, p_recipient, p_amount, p_memo, p_key, 'PENDING');
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

-- Payments left PENDING (a crash between the steps, a ledger outage) are finished by any
-- live instance: one claims a batch with FOR UPDATE SKIP LOCKED and marks it claimed for a
-- while, so two instances do not work on the same payment at once, and a claim whose
-- instance died lapses by itself.
ALTER TABLE intraledger_payments ADD COLUMN claimed_until TIMESTAMPTZ;
CREATE INDEX intraledger_payments_pending_age_idx ON intraledger_payments (created_at)
    WHERE status = 'PENDING';

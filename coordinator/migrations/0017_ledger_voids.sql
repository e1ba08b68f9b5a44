-- An external id can be voided: a row that holds it with no entries, so that no posting
-- takes it afterwards. The external id's unique constraint decides between a void and a
-- posting racing for the same id, whichever instance each comes from (ADR 0013).
ALTER TABLE ledger_transactions ADD COLUMN voided BOOLEAN NOT NULL DEFAULT false;

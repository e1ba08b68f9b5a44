-- A lock remembers who placed it, so that only that role (or an admin) may lift it: a
-- support agent cannot undo a lock that compliance placed. `locked_by` is the staff role
-- that locked the account, 'user' when its owner did (any staff member who may unlock
-- lifts it) or 'system' (compliance or an admin lift it). It is set exactly while the
-- account is LOCKED.
ALTER TABLE accounts ADD COLUMN locked_by TEXT
    CHECK (locked_by IN ('user', 'system', 'support', 'compliance', 'treasury', 'admin'));

-- Locks placed before this migration: the holder is read from the audit trail (the latest
-- change to LOCKED). A lock nobody can be found for is an admin's to lift.
UPDATE accounts a SET locked_by = coalesce(
    (SELECT CASE
                WHEN e.actor LIKE 'user:%' THEN 'user'
                WHEN e.actor = 'system' THEN 'system'
                ELSE (SELECT s.role FROM staff s WHERE 'staff:' || s.id::text = e.actor)
            END
       FROM account_events e
      WHERE e.account_id = a.id AND e.kind = 'status' AND e.new_value = 'LOCKED'
      ORDER BY e.id DESC
      LIMIT 1),
    'admin')
WHERE a.status = 'LOCKED';

ALTER TABLE accounts ADD CONSTRAINT accounts_locked_by_while_locked
    CHECK ((status = 'LOCKED') = (locked_by IS NOT NULL));

-- The role the actor acted in ('user', 'system' or the staff role at the time), so the
-- audit trail shows it even after a staff member's role changes.
ALTER TABLE account_events ADD COLUMN actor_role TEXT;

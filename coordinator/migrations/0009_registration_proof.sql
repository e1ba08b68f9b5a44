-- A password attaches to an identity only once its owner proved it with a one-time code
-- (bank/auth.rs): registration stores no password, so a user may have none until the
-- first confirmation sets one (or a reset does). Password reset codes get their own
-- purpose, so that a login code cannot change a password.

ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

-- A password stored on a registration nobody has confirmed was chosen by whoever
-- registered, not necessarily the owner: it never becomes usable.
UPDATE users SET password_hash = NULL WHERE verified_at IS NULL;

-- Unverified registrations expire; the sweep finds them by age.
CREATE INDEX users_unverified_idx ON users (created_at) WHERE verified_at IS NULL;

ALTER TABLE one_time_codes DROP CONSTRAINT one_time_codes_purpose_check;
ALTER TABLE one_time_codes ADD CONSTRAINT one_time_codes_purpose_check
    CHECK (purpose IN ('verify', 'login', 'reset'));

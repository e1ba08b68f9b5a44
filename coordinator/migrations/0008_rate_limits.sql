-- Rate-limit counters shared by every coordinator instance (api/ratelimit.rs): one row
-- per key (`login:net:<client>`, `login:id:<identity>`, `sms:cc:<country code>`, ...),
-- a fixed window each. A check upserts all of a request's keys in one statement.
-- UNLOGGED: counters are worth little after a crash (a restart forgets at most one
-- window) and cost no WAL flush on the login path.

CREATE UNLOGGED TABLE rate_limit_counters (
    key           TEXT PRIMARY KEY CHECK (length(key) <= 400),
    window_secs   DOUBLE PRECISION NOT NULL CHECK (window_secs > 0),
    window_start  TIMESTAMPTZ NOT NULL,
    hits          INT NOT NULL CHECK (hits > 0)
);

//! `coordinator config defaults`: the full default configuration as commented TOML. The
//! values come from [`Config::default`] (the one place defaults live); this file only adds
//! what each key means. A test fails when a key has no comment, and another when
//! docs/configuration.md no longer holds this output.

use super::config::Config;

/// What each key means, by dotted key (a table's own comment under its name).
const DOCS: &[(&str, &str)] = &[
    (
        "database",
        "PostgreSQL. DATABASE_URL (or --database-url) overrides `url`.",
    ),
    (
        "database.url",
        "The PostgreSQL URL; its password is redacted by `config check`.",
    ),
    (
        "database.connections",
        "Most connections in this instance's pool (--connections).",
    ),
    (
        "database.migrate",
        "Run the migrations at start (--no-migrate turns it off). Off, the instance is not\n\
         ready until `coordinator migrate` or another instance has brought the schema up to\n\
         this binary's.",
    ),
    (
        "api",
        "The HTTP API listener: GraphQL, REST, /healthz and /readyz.",
    ),
    ("api.bind", "Address to listen on (--bind)."),
    (
        "api.dev",
        "Development mode: GraphiQL pages and introspection (--dev).",
    ),
    (
        "api.request_timeout_seconds",
        "Seconds a request may run before it is abandoned with 503 REQUEST_TIMEOUT.",
    ),
    (
        "api.max_body_bytes",
        "Largest request body (413 PAYLOAD_TOO_LARGE above).",
    ),
    (
        "api.cors_origins",
        "Origins allowed to call from a browser (CORS), e.g. [\"https://wallet.example\"].",
    ),
    (
        "api.auth_cache_seconds",
        "Seconds an authentication may be answered from memory; revocations still reach\n\
         every instance at once. 0 reads the database for every request.",
    ),
    (
        "api.trusted_proxies",
        "Reverse proxies (CIDRs) whose forwarding header names the client, for rate limits;\n\
         none: the TCP peer is the client.",
    ),
    (
        "api.forwarded_header",
        "The header those proxies write: \"x-forwarded-for\" or \"forwarded\" (RFC 7239).",
    ),
    ("api.query", "GraphQL query limits."),
    (
        "api.lnurl",
        "Lightning addresses (user@<domain of public_url>, LUD-16) and payments to LNURLs.",
    ),
    (
        "api.lnurl.min_sendable_sats",
        "Least a payer may send to an address, satoshis.",
    ),
    (
        "api.lnurl.max_sendable_sats",
        "Most a payer may send to an address in one payment, satoshis.",
    ),
    (
        "api.lnurl.comment_allowed",
        "Longest comment a payer may add (LUD-12), characters, kept as the invoice's memo;\n\
         0: none; at most 639.",
    ),
    (
        "api.lnurl.timeout_seconds",
        "Seconds one call to another LNURL service may take.",
    ),
    (
        "api.lnurl.allow_loopback",
        "Call LNURL services on this machine over plain HTTP (tests and local demos only:\n\
         otherwise a payer could make the bank call its own private services).",
    ),
    ("api.query.max_depth", "Deepest selection accepted."),
    (
        "api.query.max_complexity",
        "Most fields in one document, each counted once.",
    ),
    (
        "api.query.max_cost",
        "Most fields counted once per item of the lists around them.",
    ),
    ("api.websocket", "GraphQL WebSocket (subscriptions) limits."),
    (
        "api.websocket.max_connections",
        "Open connections in total.",
    ),
    (
        "api.websocket.max_connections_per_credential",
        "Open connections per API key or session.",
    ),
    (
        "api.websocket.max_operations_per_connection",
        "Operations running at once on one connection.",
    ),
    (
        "api.websocket.recheck_seconds",
        "Seconds between two checks of a connection's credential without an announced\n\
         revocation (a safety net).",
    ),
    (
        "rate_limit",
        "Attempts at registration, code requests, logins and staff logins, and invoices made\n\
         without a credential, shared by every instance through PostgreSQL.",
    ),
    (
        "rate_limit.max_attempts",
        "Attempts per client network and per identity, per window.",
    ),
    ("rate_limit.window_seconds", "The window, seconds."),
    (
        "rate_limit.max_attempts_per_day",
        "Attempts per identity per 24 hours.",
    ),
    (
        "rate_limit.max_sms_per_country",
        "Codes sent by SMS per country calling code, per sms_country_window_seconds.",
    ),
    (
        "rate_limit.sms_country_window_seconds",
        "That window, seconds.",
    ),
    (
        "rate_limit.max_public_invoices",
        "Invoices made without a credential (on behalf of a recipient, LNURL-pay callbacks)\n\
         per client network, per public_invoice_window_seconds.",
    ),
    (
        "rate_limit.public_invoice_window_seconds",
        "That window, seconds.",
    ),
    ("ledger", "The ledger writer."),
    (
        "ledger.max_batch",
        "Most postings written by one statement.",
    ),
    (
        "ledger.cache_capacity",
        "Most account balances kept in the writer's memory.",
    ),
    (
        "ledger.queue_depth",
        "Postings that may wait for the writer before callers are slowed down.",
    ),
    (
        "ledger.gather_yields",
        "Times the writer yields to gather more postings before a batch (0: off).",
    ),
    ("bank", "Sessions, one-time codes, passwords."),
    ("bank.session_ttl_seconds", "Seconds a login session lasts."),
    ("bank.code_ttl_seconds", "Seconds a one-time code is valid."),
    (
        "bank.registration_ttl_seconds",
        "Seconds a registration may stay unverified before it is deleted.",
    ),
    (
        "bank.max_code_attempts",
        "Wrong guesses allowed per one-time code.",
    ),
    (
        "bank.password_cost",
        "Argon2id cost of new password hashes (OWASP's recommendation).",
    ),
    ("bank.password_cost.memory_kib", "Memory, KiB."),
    ("bank.password_cost.iterations", "Passes."),
    ("bank.password_cost.parallelism", "Lanes."),
    (
        "bank.limits",
        "Limits per KYC level over a rolling 24 hours, in satoshis (--limits FILE replaces\n\
         the whole table with the file's level0..level3).",
    ),
    (
        "bank.resume",
        "Payments left PENDING (a crash, a ledger outage) are claimed and finished by any\n\
         live instance, continuously.",
    ),
    (
        "bank.resume.interval_seconds",
        "Seconds between two passes.",
    ),
    (
        "bank.resume.grace_seconds",
        "Age in seconds below which a PENDING payment is left to the instance making it.",
    ),
    (
        "bank.resume.lease_seconds",
        "Seconds a claim keeps the other instances away (it lapses if its instance dies).",
    ),
    ("bank.resume.batch", "Most payments claimed per pass."),
    (
        "bank.webhooks",
        "Webhooks (callback endpoints): every instance runs a dispatcher over the ledger\n\
         outbox (one at a time holds its cursor) and a delivery worker; deliveries are\n\
         claimed, so no two instances send one at once. Retries back off exponentially.",
    ),
    (
        "bank.webhooks.enabled",
        "Run the dispatcher and the worker in this instance.",
    ),
    (
        "bank.webhooks.dispatch_interval_ms",
        "Milliseconds between two dispatcher passes when the outbox had nothing new.",
    ),
    (
        "bank.webhooks.deliver_interval_ms",
        "Milliseconds between two delivery passes when nothing was due.",
    ),
    (
        "bank.webhooks.deliver_batch",
        "Most deliveries claimed per pass (one per endpoint, sent concurrently).",
    ),
    (
        "bank.webhooks.request_timeout_seconds",
        "Seconds a POST to an endpoint may take (no redirects are followed).",
    ),
    (
        "bank.webhooks.lease_seconds",
        "Seconds a claim keeps the other instances away; more than request_timeout_seconds.",
    ),
    (
        "bank.webhooks.initial_backoff_ms",
        "Milliseconds before the first retry; each next delay doubles (with jitter).",
    ),
    (
        "bank.webhooks.max_backoff_seconds",
        "Longest delay between two attempts, seconds.",
    ),
    (
        "bank.webhooks.max_attempts",
        "Attempts after which a delivery is dead (no longer retried).",
    ),
    (
        "bank.webhooks.max_age_seconds",
        "Age in seconds after which a failing delivery is dead.",
    ),
    ("bank.limits.level0", "Level 0: no identity checked."),
    ("bank.limits.level1", "Level 1."),
    ("bank.limits.level2", "Level 2."),
    ("bank.limits.level3", "Level 3."),
    (
        "internal_send",
        "Internal sends (to other wallets of this bank).",
    ),
    ("withdrawal", "Withdrawals (on-chain and Lightning out)."),
    (
        "notifier",
        "Where one-time codes go (--notifier FILE replaces this table with the file's).\n\
         Secrets are never here: [notifier.smtp] and [notifier.twilio] name the environment\n\
         variable or file that holds them.",
    ),
    (
        "notifier.email",
        "\"outbox\" (the notification_outbox table) or \"smtp\".",
    ),
    ("notifier.sms", "\"outbox\", \"none\" or \"twilio\"."),
    ("log", "Logs, on standard error."),
    (
        "log.format",
        "\"text\" or \"json\" (one object per line, with the request id of its request).",
    ),
    (
        "log.filter",
        "Which events are written, as RUST_LOG (which overrides it).",
    ),
    ("metrics", "Prometheus metrics."),
    (
        "metrics.sample_seconds",
        "Seconds between two samples of payment states and the connection pool.",
    ),
];

/// Keys without a default, shown commented out under their table: (table, line).
const UNSET: &[(&str, &str)] = &[
    (
        "api",
        "# The bank's public origin: its host is the domain of its users' Lightning\n\
         # addresses (alice@bank.example). Unset: no Lightning addresses.\n\
         # public_url = \"https://bank.example\"",
    ),
    (
        "metrics",
        "# The listener of GET /metrics; no listener when unset.\n# bind = \"0.0.0.0:9464\"",
    ),
];

/// Tables without a default, shown commented out at the end.
const UNSET_TABLES: &str = r#"
# Where SMTP sends e-mail (with notifier.email = "smtp").
# [notifier.smtp]
# host = "smtp.example"
# tls = "starttls"               # "none", "starttls" or "implicit"
# port = 587                     # by tls when absent
# from = "Bank <codes@bank.example>"
# timeout_secs = 30
# username = "codes"
# password_env = "SMTP_PASSWORD" # or password_file = "/run/secrets/smtp"

# Twilio's Messages API (with notifier.sms = "twilio").
# [notifier.twilio]
# account_sid = "AC..."
# from = "+15550000000"
# auth_token_env = "TWILIO_TOKEN" # or auth_token_file = "/run/secrets/twilio"

# On-chain: the chain source, the bank's wallets and deposits (--onchain FILE replaces
# this table with the file's). Absent: on-chain operations answer ONCHAIN_UNAVAILABLE.
# [onchain.chain]
# kind = "esplora"               # or "bitcoind", with auth = { cookie_file = ".." }
# url = "http://127.0.0.1:3002"
# call = { timeout_ms = 5000, retries = 3 }
#
# [[onchain.wallets]]            # the first hot wallet hands out deposit addresses
# name = "hot"
# role = "hot"
# policy_file = "hot-policy.json" # relative to the configuration file
#
# [onchain.deposits]             # all optional
# confirmations = 3              # before the ledger is credited
# minimum_sat = 546              # below: recorded, never credited
# poll_interval_ms = 200
# start_height = 0               # first block scanned on a fresh database
# lease_ttl_ms = 10000           # how soon another instance takes the driver over

# Lightning (docs/operations.md, Lightning). Absent: Lightning operations answer
# LIGHTNING_UNAVAILABLE.
# [lightning]
# network = "bitcoin"            # the node's chain: bitcoin, testnet, signet or regtest
# backend = "embedded"           # or "lnd"; absent: lnd if lnd_address is set, else embedded
#
# The embedded node (LDK Node in this process; one coordinator per data_dir):
# data_dir = "/var/lib/bastion/lightning"   # seed, channel state, invoice book (mode 0700)
# esplora_url = "https://esplora.internal/api"   # the chain: an Esplora API, or
# bitcoind_url = "http://bitcoind.internal:8332"  # Bitcoin Core's RPC, with
# bitcoind_auth = { cookie_file = "/run/bitcoind/.cookie" }  # or { user, password_file }
# listen = "0.0.0.0:9735"        # where peers connect; absent: outbound only
# sync_interval_seconds = 10     # chain sync
# anchor_channels = true         # fee-bumpable closes; keeps an on-chain reserve
#
# LND over its gRPC API (any number of coordinators):
# lnd_address = "https://lnd.internal:10009"
# lnd_tls_cert = "/run/secrets/lnd/tls.cert"        # LND's certificate, pinned
# lnd_macaroon = "/run/secrets/lnd/bank.macaroon"   # baked for invoices and payments
#
# fee_reserve_ppm = 5000         # held with a payment for routing fees: 0.5 %...
# fee_reserve_min_sat = 10       # ...and at least this; the unused part is returned
# pay_timeout_seconds = 30       # a send then answers PENDING; the reconciler finishes it
# invoice_expiry_minutes = 1440  # when an invoice request names no expiry
# reconcile_interval_seconds = 5 # how often each instance checks in-flight payments
"#;

fn doc(key: &str) -> Option<&'static str> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    DOCS.iter()
        .find(|(k, _)| *k == key)
        .or_else(|| DOCS.iter().find(|(k, _)| *k == leaf))
        .map(|(_, d)| *d)
}

fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The default configuration as commented TOML.
///
/// # Errors
/// The keys that have no comment (a test keeps the list empty).
pub fn render() -> Result<String, Vec<String>> {
    let plain = toml::to_string_pretty(&Config::default()).map_err(|e| vec![e.to_string()])?;
    let mut out = String::from(
        "# The coordinator's configuration, with every default. Layers, each over the one\n\
         # before: these defaults < the file of --config (or COORDINATOR_CONFIG) < variables\n\
         # COORDINATOR_<SECTION>__<KEY> (e.g. COORDINATOR_API__BIND) < command-line flags.\n",
    );
    let mut missing = Vec::new();
    let mut table = String::new();
    for line in plain.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_owned();
            out.push('\n');
            match doc(&table) {
                Some(d) => comment(&mut out, d),
                None => missing.push(table.clone()),
            }
            out.push_str(line);
            out.push('\n');
            for (t, l) in UNSET {
                if *t == table {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        } else if let Some((key, _)) = trimmed.split_once(" = ") {
            let full = format!("{table}.{key}");
            match doc(&full) {
                Some(d) => comment(&mut out, d),
                None => missing.push(full),
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(UNSET_TABLES);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_comment_and_the_output_is_the_defaults() {
        let text = render().unwrap_or_else(|missing| panic!("keys without a comment: {missing:?}"));
        let parsed: Config = toml::from_str(&text).unwrap();
        let want = toml::to_string(&Config::default()).unwrap();
        assert_eq!(toml::to_string(&parsed).unwrap(), want);
    }

    #[test]
    fn every_comment_names_a_key() {
        let plain = toml::to_string_pretty(&Config::default()).unwrap();
        for (key, _) in DOCS {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            assert!(plain.contains(leaf), "{key} is documented but not a key");
        }
    }
}

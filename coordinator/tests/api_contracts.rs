//! The API's generated contracts: the GraphQL SDL (public and admin) and the OpenAPI
//! document are committed; these tests fail when the code and the files differ.
//! Regenerate with `UPDATE_API_SNAPSHOTS=1 cargo nextest run -p coordinator -E 'test(snapshot)'`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::path::PathBuf;

fn check_snapshot(file: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/api")
        .join(file);
    if std::env::var_os("UPDATE_API_SNAPSHOTS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{file} differs from the generated contract; regenerate it with \
         UPDATE_API_SNAPSHOTS=1 and commit the result"
    );
}

#[test]
fn snapshot_public_sdl_matches_committed_file() {
    check_snapshot("schema.graphql", &coordinator::api::public_sdl());
}

#[test]
fn snapshot_admin_sdl_matches_committed_file() {
    check_snapshot("admin-schema.graphql", &coordinator::api::admin_sdl());
}

#[test]
fn snapshot_openapi_matches_committed_file() {
    check_snapshot("openapi.json", &coordinator::api::openapi_json());
}

#[test]
fn openapi_is_valid_json_and_lists_every_route() {
    let doc: serde_json::Value = serde_json::from_str(&coordinator::api::openapi_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/me", "get"),
        ("/v1/me/username", "post"),
        ("/v1/wallets", "get"),
        ("/v1/wallets/{wallet_id}", "get"),
        ("/v1/wallets/{wallet_id}/transactions", "get"),
        ("/v1/payments/intraledger", "post"),
        ("/v1/limits", "get"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys/{key_id}/revoke", "post"),
        ("/v1/wallets/{wallet_id}/onchain-address", "post"),
        ("/v1/wallets/{wallet_id}/onchain-address", "get"),
        ("/v1/wallets/{wallet_id}/pending-incoming", "get"),
        ("/v1/wallets/{wallet_id}/deposits", "get"),
        ("/v1/auth/register", "post"),
        ("/v1/auth/code", "post"),
        ("/v1/auth/code/confirm", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/auth/password/change", "post"),
        ("/v1/auth/password/reset/request", "post"),
        ("/v1/auth/password/reset", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in expected {
        let op = &paths[path][method];
        assert!(
            op.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        if path.starts_with("/v1/auth/") {
            // These take no Idempotency-Key (see the API README): the document must not
            // promise a stored replay.
            let params = op["parameters"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(
                !params.iter().any(|p| p["name"] == "Idempotency-Key"),
                "{path} must not document an Idempotency-Key"
            );
        } else if method == "post" {
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
                "{path} must document the Idempotency-Key header"
            );
        }
    }
    let listed: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        listed,
        expected.len(),
        "a route is documented but not expected here"
    );
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("api_key") && schemes.contains_key("bearer"));
}

/// The names Blink clients depend on (types, inputs, unions, enums, scalars) are there.
#[test]
fn public_sdl_uses_blink_names() {
    let sdl = coordinator::api::public_sdl();
    for needle in [
        "interface Account {",
        "type ConsumerAccount implements Account {",
        "interface Wallet {",
        "type BTCWallet implements Wallet {",
        "input IntraLedgerPaymentSendInput {",
        "type PaymentSendPayload {",
        "enum PaymentSendResult {",
        "ALREADY_PAID",
        "interface Error {",
        "type GraphQLApplicationError implements Error {",
        "union InitiationVia = ",
        "type InitiationViaIntraLedger {",
        "union SettlementVia = ",
        "type SettlementViaIntraLedger {",
        "type TransactionConnection {",
        "type TransactionEdge {",
        "type PageInfo {",
        "type AccountLimits {",
        "interface AccountLimit {",
        "type OneDayAccountLimit implements AccountLimit {",
        "input ApiKeyCreateInput {",
        "type ApiKeyCreatePayload {",
        "input ApiKeyRevokeInput {",
        "input UserUpdateUsernameInput {",
        "input UserLoginInput {",
        "type AuthTokenPayload {",
        "type MyUpdatesPayload {",
        "type IntraLedgerUpdate {",
        "scalar SatAmount",
        "scalar SignedAmount",
        "scalar WalletId",
        "scalar Memo",
        "scalar Username",
        "scalar Timestamp",
        "enum WalletCurrency {",
        "enum AccountLevel {",
        "enum TxDirection {",
        "enum TxStatus {",
        "enum Scope {",
        // On-chain deposits and the Blink fields issue 13 adds.
        "input OnChainAddressCreateInput {",
        "input OnChainAddressCurrentInput {",
        "type OnChainAddressPayload {",
        "type OnChainUpdate {",
        "type SettlementViaOnChain {",
        "type InitiationViaOnChain {",
        "type UsdWallet implements Wallet {",
        "scalar TxExternalId",
        "scalar Language",
        "scalar OnChainAddress",
        "scalar OnChainTxHash",
        "OnchainReceiptPending",
        "pendingIncomingTransactionsByAddress(address: OnChainAddress!): [Transaction!]!",
        "externalId: TxExternalId",
        "language: Language!",
        // LNURL-pay and Lightning addresses.
        "input LnurlPaymentSendInput {",
        "input LnAddressPaymentSendInput {",
        "lnurl: String!",
        "lnAddress: String!",
    ] {
        assert!(sdl.contains(needle), "public SDL lacks {needle:?}");
    }
    // Root fields and their arguments exactly as Blink declares them, so that a Blink
    // client's operation documents validate unchanged.
    for signature in [
        "me: User",
        "authorization: Authorization!",
        "accountDefaultWallet(username: Username!, walletCurrency: WalletCurrency): PublicWallet!",
        "userDefaultWalletId(username: Username!): WalletId!",
        "usernameAvailable(username: Username!): Boolean",
        "intraLedgerPaymentSend(input: IntraLedgerPaymentSendInput!): PaymentSendPayload!",
        "onChainAddressCreate(input: OnChainAddressCreateInput!): OnChainAddressPayload!",
        "onChainAddressCurrent(input: OnChainAddressCurrentInput!): OnChainAddressPayload!",
        "userUpdateUsername(input: UserUpdateUsernameInput!): UserUpdateUsernamePayload!",
        "apiKeyCreate(input: ApiKeyCreateInput!): ApiKeyCreatePayload!",
        "apiKeyRevoke(input: ApiKeyRevokeInput!): ApiKeyRevokePayload!",
        "userLogin(input: UserLoginInput!): AuthTokenPayload!",
        "userLogout(input: UserLogoutInput): SuccessPayload!",
        "myUpdates: MyUpdatesPayload!",
        "walletById(walletId: WalletId!): Wallet!",
        "transactions(after: String, before: String, first: Int, last: Int, walletIds: [WalletId]): TransactionConnection",
        "transactions(after: String, before: String, first: Int, last: Int): TransactionConnection",
        "transactionById(transactionId: ID!): Transaction!",
        "limits: AccountLimits!",
        "amount: SatAmount!",
        "recipientWalletId: WalletId!",
        "walletId: WalletId!",
        "memo: Memo",
        "scopes: [Scope!]! = [READ, WRITE]",
        "lastUsedAt: Timestamp",
        "lnurlPaymentSend(input: LnurlPaymentSendInput!): PaymentSendPayload!",
        "lnAddressPaymentSend(input: LnAddressPaymentSendInput!): PaymentSendPayload!",
    ] {
        assert!(sdl.contains(signature), "public SDL lacks {signature:?}");
    }
    // Money is never a float.
    assert!(!sdl.contains("Float"), "no Float in the public schema");
}

#[test]
fn admin_sdl_uses_blink_names() {
    let sdl = coordinator::api::admin_sdl();
    for needle in [
        "accountDetailsByAccountId(accountId: ID!): AuditedAccount!",
        "accountDetailsByUsername(username: Username!): AuditedAccount!",
        "accountDetailsByEmail(email: EmailAddress!): AuditedAccount!",
        "accountDetailsByUserId(userId: ID!): AuditedAccount!",
        "accountDetailsByUserPhone(phone: Phone!): AuditedAccount!",
        "accountUpdateStatus(input: AccountUpdateStatusInput!): AccountDetailPayload!",
        "accountUpdateLevel(input: AccountUpdateLevelInput!): AccountDetailPayload!",
        "type AuditedAccount {",
        "enum AccountStatus {",
    ] {
        assert!(sdl.contains(needle), "admin SDL lacks {needle:?}");
    }
    assert!(!sdl.contains("Float"));
}

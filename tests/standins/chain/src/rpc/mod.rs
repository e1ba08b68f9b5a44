//! A bitcoind JSON-RPC face on the same node (a second port): the methods a
//! block-based chain source (bdk_bitcoind_rpc's emitter) and a bitcoind
//! adapter call, with HTTP basic auth and Bitcoin Core's error objects and codes.

mod decode;
mod methods;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::node::{SharedNode, lock};

/// Bitcoin Core's RPC error codes used here (`src/rpc/protocol.h`).
pub mod codes {
    /// RPC_MISC_ERROR.
    pub const MISC_ERROR: i32 = -1;
    /// RPC_TYPE_ERROR.
    pub const TYPE_ERROR: i32 = -3;
    /// RPC_INVALID_ADDRESS_OR_KEY (also "block not found", "no such transaction").
    pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
    /// RPC_INVALID_PARAMETER.
    pub const INVALID_PARAMETER: i32 = -8;
    /// RPC_DESERIALIZATION_ERROR.
    pub const DESERIALIZATION_ERROR: i32 = -22;
    /// RPC_VERIFY_ERROR.
    pub const VERIFY_ERROR: i32 = -25;
    /// RPC_VERIFY_REJECTED.
    pub const VERIFY_REJECTED: i32 = -26;
    /// RPC_VERIFY_ALREADY_IN_CHAIN.
    pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
    /// RPC_INVALID_REQUEST.
    pub const INVALID_REQUEST: i32 = -32600;
    /// RPC_METHOD_NOT_FOUND.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// RPC_PARSE_ERROR.
    pub const PARSE_ERROR: i32 = -32700;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Bitcoin Core's code.
    pub code: i32,
    /// Bitcoin Core's message.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Credentials the RPC face accepts. `Debug` hides the password.
#[derive(Clone)]
pub struct RpcAuth {
    /// User name.
    pub user: String,
    /// Password (test credentials; never logged).
    pub password: String,
}

impl std::fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcAuth")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone)]
struct RpcState {
    node: SharedNode,
    auth: RpcAuth,
}

/// The JSON-RPC routes (`/` and `/wallet/{name}`, as bitcoind) over `node`.
pub fn router(node: SharedNode, auth: RpcAuth) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/wallet/{name}", post(handle))
        .with_state(RpcState { node, auth })
}

fn authorized(headers: &HeaderMap, auth: &RpcAuth) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    decoded == format!("{}:{}", auth.user, auth.password).as_bytes()
}

async fn handle(State(state): State<RpcState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers, &state.auth) {
        tracing::info!(target: "regtest_standin", "rpc: unauthorized request refused");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"jsonrpc\"")],
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            let reply = legacy_reply(
                Value::Null,
                Err(RpcError::new(codes::PARSE_ERROR, "Parse error")),
            );
            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(reply)).into_response();
        }
    };
    if let Value::Array(batch) = request {
        // A batch always answers 200 with one reply per request.
        let replies: Vec<Value> = batch.iter().map(|r| one(&state, r).1).collect();
        return axum::Json(Value::Array(replies)).into_response();
    }
    let (status, reply) = one(&state, &request);
    (status, axum::Json(reply)).into_response()
}

fn legacy_reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(r) => json!({ "result": r, "error": null, "id": id }),
        Err(e) => {
            json!({ "result": null, "error": { "code": e.code, "message": e.message }, "id": id })
        }
    }
}

/// One request: JSON-RPC 2.0 answers 200 with either `result` or `error`;
/// the legacy 1.0 form answers both fields and an HTTP error status on
/// errors, as Bitcoin Core does.
fn one(state: &RpcState, request: &Value) -> (StatusCode, Value) {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let v2 = request.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let result = call(state, request);
    if v2 {
        let reply = match result {
            Ok(r) => json!({ "jsonrpc": "2.0", "result": r, "id": id }),
            Err(e) => {
                json!({ "jsonrpc": "2.0", "error": { "code": e.code, "message": e.message }, "id": id })
            }
        };
        return (StatusCode::OK, reply);
    }
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) if e.code == codes::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        Err(e) if e.code == codes::INVALID_REQUEST => StatusCode::BAD_REQUEST,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, legacy_reply(id, result))
}

fn call(state: &RpcState, request: &Value) -> Result<Value, RpcError> {
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(codes::INVALID_REQUEST, "Method must be a string"))?;
    let params = match request.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(_)) => {
            return Err(RpcError::new(
                codes::INVALID_REQUEST,
                "named parameters are not supported by the stand-in; pass them by position",
            ));
        }
        Some(_) => {
            return Err(RpcError::new(
                codes::INVALID_REQUEST,
                "Params must be an array or object",
            ));
        }
    };
    let mut node = lock(&state.node);
    let result = methods::dispatch(&mut node, method, &params);
    match &result {
        Ok(_) => tracing::debug!(target: "regtest_standin", method, "rpc call"),
        Err(e) => {
            tracing::info!(target: "regtest_standin", method, code = e.code, message = %e.message, "rpc call failed")
        }
    }
    result
}

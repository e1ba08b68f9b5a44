//! A stand-in for Twilio's Messages API, NOT Twilio: an HTTP server on 127.0.0.1 that
//! answers `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` as Twilio documents it
//! (basic auth with the account SID and auth token, a form body with `To`, `From` and
//! `Body`; 201 with the message resource, or an error body `{code, message, more_info,
//! status}`) and records the messages it accepted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The account SID it accepts.
    pub account_sid: String,
    /// Its auth token.
    pub auth_token: String,
    /// The only `From` number the account owns.
    pub from: String,
    /// Numbers Twilio refuses as invalid (error 21211).
    pub invalid_numbers: Vec<String>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

/// One accepted SMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sms {
    pub to: String,
    pub from: String,
    pub body: String,
}

#[derive(Debug)]
struct Shared {
    behaviour: Behaviour,
    accepted: Mutex<Vec<Sms>>,
    requests: Mutex<u32>,
}

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct TwilioStandIn {
    /// Pass as the notifier's `base_url`.
    pub base_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for TwilioStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

/// The user and password of a basic-auth header.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    *shared.requests.lock().unwrap() += 1;
    let b = &shared.behaviour;
    if let Some(delay) = b.delay {
        tokio::time::sleep(delay).await;
    }
    if basic_auth(&headers) != Some((b.account_sid.clone(), b.auth_token.clone())) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if sid != b.account_sid {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    let (Some(to), Some(from)) = (form.get("To"), form.get("From")) else {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    let Some(body) = form.get("Body").filter(|b| !b.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    if !to.starts_with('+') || b.invalid_numbers.contains(to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if *from != b.from {
        return error(
            StatusCode::BAD_REQUEST,
            21606,
            "The From phone number is not a valid, SMS-capable inbound phone number for your account.",
        );
    }
    shared.accepted.lock().unwrap().push(Sms {
        to: to.clone(),
        from: from.clone(),
        body: body.clone(),
    });
    (
        StatusCode::CREATED,
        Json(json!({
            "sid": "SM00000000000000000000000000000001",
            "account_sid": sid,
            "to": to,
            "from": from,
            "body": body,
            "status": "queued",
        })),
    )
        .into_response()
}

impl TwilioStandIn {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start(behaviour: Behaviour) -> TwilioStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            behaviour,
            accepted: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create_message),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TwilioStandIn {
            base_url,
            shared,
            task,
        }
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Sms> {
        self.shared.accepted.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn requests(&self) -> u32 {
        *self.shared.requests.lock().unwrap()
    }
}

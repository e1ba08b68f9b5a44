//! GraphQL: the public schema at `/graphql` (subscriptions at `/graphql/ws`) and the staff
//! schema at `/admin/graphql`. Both are generated from our Rust types; their SDL is
//! committed next to this module and a test fails when it drifts.

mod admin;
mod admin_lightning;
mod admin_onchain;
mod guard;
mod label;
mod public;
mod scalars;
mod types;
mod usd_wallet;
mod ws;

use async_graphql::http::GraphiQLSource;
use async_graphql::{EmptySubscription, Schema, SchemaBuilder};
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument;

pub(crate) use ws::WsLimits;
pub use ws::{CLOSE_CREDENTIAL_REVOKED, CLOSE_TOO_MANY_CONNECTIONS, WsConfig};

use super::{AppState, ClientAddr, RequestMeta, authenticate, authenticate_staff, idempotency_key};

/// The public schema.
pub type PublicSchema = Schema<public::Query, public::Mutation, public::Subscription>;
/// The staff schema.
pub type AdminSchema = Schema<admin::AdminQuery, admin::AdminMutation, EmptySubscription>;

fn public_builder() -> SchemaBuilder<public::Query, public::Mutation, public::Subscription> {
    Schema::build(
        public::Query::default(),
        public::Mutation::default(),
        public::Subscription::default(),
    )
}

fn admin_builder() -> SchemaBuilder<admin::AdminQuery, admin::AdminMutation, EmptySubscription> {
    Schema::build(admin::AdminQuery, admin::AdminMutation, EmptySubscription)
}

fn sdl_options() -> async_graphql::SDLExportOptions {
    async_graphql::SDLExportOptions::new()
        .sorted_fields()
        .sorted_arguments()
        .sorted_enum_items()
}

/// The public schema's SDL, as committed in `schema.graphql`.
pub fn public_sdl() -> String {
    public_builder().finish().sdl_with_options(sdl_options())
}

/// The staff schema's SDL, as committed in `admin-schema.graphql`.
pub fn admin_sdl() -> String {
    admin_builder().finish().sdl_with_options(sdl_options())
}

#[derive(Clone)]
struct GraphqlState {
    app: AppState,
    public: PublicSchema,
    admin: AdminSchema,
    public_fields: label::RootFields,
    admin_fields: label::RootFields,
}

pub(crate) fn routes(app: AppState) -> Router {
    let depth = app.config.max_query_depth;
    let complexity = app.config.max_query_complexity;
    let dev = app.config.dev_mode;
    let max_cost = app.config.max_query_cost;
    // Outside development the public schema cannot be introspected at all (its SDL is
    // published with the API), and the staff schema only by an admin.
    let (public_introspection, admin_introspection) = if dev {
        (guard::Introspection::Allowed, guard::Introspection::Allowed)
    } else {
        (
            guard::Introspection::Refused,
            guard::Introspection::AdminOnly,
        )
    };
    let mut public = public_builder()
        .data(app.clone())
        .limit_depth(depth)
        .limit_complexity(complexity)
        .extension(guard::Guard {
            introspection: public_introspection,
            max_cost,
        });
    if !dev {
        // Also off in the schema itself, should a path ever skip the guard.
        public = public.disable_introspection();
    }
    let public = public.finish();
    let admin = admin_builder()
        .data(app.clone())
        .limit_depth(depth)
        .limit_complexity(complexity)
        .extension(guard::Guard {
            introspection: admin_introspection,
            max_cost,
        })
        .finish();
    let state = GraphqlState {
        public_fields: label::RootFields::from_sdl("graphql", &public_sdl()),
        admin_fields: label::RootFields::from_sdl("admin", &admin_sdl()),
        app,
        public,
        admin,
    };
    let mut r = Router::new()
        .route("/graphql", post(public_handler))
        .route("/graphql/ws", get(ws_handler))
        .route("/admin/graphql", post(admin_handler));
    if dev {
        r = r
            .route(
                "/graphql",
                get(|| async {
                    Html(
                        GraphiQLSource::build()
                            .endpoint("/graphql")
                            .subscription_endpoint("/graphql/ws")
                            .finish(),
                    )
                }),
            )
            .route(
                "/admin/graphql",
                get(|| async { Html(GraphiQLSource::build().endpoint("/admin/graphql").finish()) }),
            );
    }
    r.layer(DefaultBodyLimit::max(MAX_BODY)).with_state(state)
}

/// Largest GraphQL request body: generous for any real document, small enough that a
/// flood of large bodies costs little.
const MAX_BODY: usize = 64 * 1024;

/// Parses a GraphQL request from a JSON body. Only JSON is accepted: the schema has no
/// uploads, so multipart bodies (which the stock extractor would spool) are refused.
fn parse_request(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<async_graphql::Request, super::ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(super::ApiError::invalid(
            "GraphQL requests must be POSTed as application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| super::ApiError::invalid(format!("invalid GraphQL request: {e}")))
}

pub(crate) fn error_response(e: &super::ApiError) -> Response {
    let body = async_graphql::Response::from_errors(vec![
        e.to_graphql()
            .into_server_error(async_graphql::Pos::default()),
    ]);
    (e.status(), GraphQLResponse::from(body)).into_response()
}

/// `response` labelled with its operation, for the request metrics.
fn labelled(mut response: Response, operation: String) -> Response {
    response
        .extensions_mut()
        .insert(super::observe::Operation(operation));
    response
}

async fn public_handler(
    State(s): State<GraphqlState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match parse_request(&headers, &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let operation = s.public_fields.label(&req);
    labelled(public_execute(s, client, headers, req).await, operation)
}

async fn public_execute(
    s: GraphqlState,
    client: String,
    headers: HeaderMap,
    req: async_graphql::Request,
) -> Response {
    let (principal, bearer) = match authenticate(&s.app.bank, &headers).await {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let idempotency_key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(e) => return error_response(&e),
    };
    // The account id on every log line of the request; never a credential.
    let span = tracing::info_span!(
        "graphql",
        account = ?principal.as_ref().map(|p| p.account_id)
    );
    let meta = RequestMeta {
        principal,
        bearer,
        idempotency_key,
        client,
    };
    GraphQLResponse::from(s.public.execute(req.data(meta)).instrument(span).await).into_response()
}

async fn admin_handler(
    State(s): State<GraphqlState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match parse_request(&headers, &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let operation = s.admin_fields.label(&req);
    labelled(admin_execute(s, client, headers, req).await, operation)
}

async fn admin_execute(
    s: GraphqlState,
    client: String,
    headers: HeaderMap,
    req: async_graphql::Request,
) -> Response {
    let staff = match authenticate_staff(&s.app.bank, &headers).await {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let span = tracing::info_span!(
        "admin_graphql",
        staff = ?staff.map(|s| s.staff_id),
        role = ?staff.map(|s| s.role)
    );
    let meta = admin::AdminMeta { staff, client };
    GraphQLResponse::from(s.admin.execute(req.data(meta)).instrument(span).await).into_response()
}

async fn ws_handler(
    State(s): State<GraphqlState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The first protocol offered that we speak, as async-graphql's own extractor does.
    let Some(protocol) = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| {
            offered.split(',').find_map(|p| {
                p.trim()
                    .parse::<async_graphql::http::WebSocketProtocols>()
                    .ok()
            })
        })
    else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let Some(place) = s.app.ws.connection() else {
        return super::ApiError::too_many_connections(
            "too many WebSocket connections; try again later",
        )
        .into_response();
    };
    // Only the credential headers matter to the connection.
    let headers: HeaderMap = headers
        .iter()
        .filter(|(k, _)| *k == axum::http::header::AUTHORIZATION || k.as_str() == "x-api-key")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            ws::serve(socket, s.public, protocol, s.app, headers, client, place)
        })
}

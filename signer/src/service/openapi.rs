//! The OpenAPI document, served at `/v1/openapi.json` and committed as
//! `signer/src/service/openapi.json` (a test fails when they differ).

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Bastion signer", description = "The custody signer's REST API (docs/signer-api.md)."),
    paths(
        super::health::health,
        super::requests::list_policies,
        super::requests::create_request,
        super::requests::list_requests,
        super::requests::get_request,
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The whole OpenAPI document (this file's paths and those merged from other files).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::approvals::ApprovalsDoc::openapi());
    doc.merge(super::policy_changes::PolicyChangesDoc::openapi());
    doc
}

/// [`openapi`] as pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut json = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    json.push('\n');
    json
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([("content-type", "application/json")], openapi_json()) }),
    )
}

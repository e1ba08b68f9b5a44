//! Page sizes, one rule for both public APIs (GraphQL and REST).

use crate::api::errors::ApiError;

/// Largest page of transactions a client may ask for.
pub const MAX_PAGE: i32 = 100;
/// Page size when the client gives none.
pub const DEFAULT_PAGE: i32 = 20;

/// Checks relay arguments: forward pagination only, 1 to 100 items.
pub(crate) fn page_size(
    first: Option<i32>,
    last: Option<i32>,
    before: Option<&String>,
) -> Result<u32, ApiError> {
    if last.is_some() || before.is_some() {
        return Err(ApiError::invalid(
            "backward pagination (last, before) is not supported; use first and after",
        ));
    }
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(ApiError::invalid(format!("first must be 1 to {MAX_PAGE}")));
    }
    u32::try_from(first).map_err(|_| ApiError::invalid("first must be positive"))
}

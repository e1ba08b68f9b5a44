//! GraphQL object types shared by the public and the admin schema, named and shaped as in
//! Blink's schema (`BTCWallet` implementing `Wallet`, `Transaction` with its
//! `InitiationVia`/`SettlementVia` unions, relay connections, `AccountLimits`).
//!
//! Every field that shows a user's data checks the viewer again: a user's credential needs
//! the `read` scope, a staff member the `ViewTransactions` action. The root fields check
//! first; these checks are the second line, so a type reached by a new path stays guarded.

mod invoice;
mod transaction;
mod wallet;

pub use invoice::*;
pub use transaction::*;
pub use wallet::*;

use async_graphql::{Context, Result};

use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::bank::{BankError, Principal, Scope, StaffAction, StaffPrincipal};

pub(crate) use crate::api::paging::page_size;
pub use crate::api::paging::{DEFAULT_PAGE, MAX_PAGE};

/// The application state shared by every resolver.
pub(crate) fn app<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// A domain error as a top-level GraphQL error.
pub(crate) fn gql(err: BankError) -> async_graphql::Error {
    ApiError::from(&err).to_graphql()
}

/// Blink's `InvoicePaymentStatus`.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoicePaymentStatus {
    /// No longer payable.
    Expired,
    /// Paid.
    Paid,
    /// Payable.
    Pending,
}

impl From<crate::bank::lightning::InvoiceStatus> for InvoicePaymentStatus {
    fn from(s: crate::bank::lightning::InvoiceStatus) -> Self {
        use crate::bank::lightning::InvoiceStatus;
        match s {
            InvoiceStatus::Pending => InvoicePaymentStatus::Pending,
            InvoiceStatus::Paid => InvoicePaymentStatus::Paid,
            InvoiceStatus::Expired => InvoicePaymentStatus::Expired,
        }
    }
}

/// Who looks at a wallet: its owner (through a credential with scopes) or staff.
#[derive(Clone, Debug)]
pub(crate) enum Viewer {
    /// A customer.
    User(Principal),
    /// A staff member.
    Staff(StaffPrincipal),
}

impl Viewer {
    /// Fails unless the viewer may read account data.
    pub(crate) fn may_read(&self) -> Result<()> {
        match self {
            Viewer::User(p) => p.require(Scope::Read).map_err(gql),
            Viewer::Staff(s) => s.require(StaffAction::ViewAccounts).map_err(gql),
        }
    }
}

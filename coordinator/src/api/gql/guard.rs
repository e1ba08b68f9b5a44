//! Checks a GraphQL document before anything runs: introspection only where it is allowed,
//! list sizes (`first`/`last`) within the page bound, and a cost that counts every field
//! as many times as the lists around it repeat it.
//!
//! async-graphql's own complexity counts each field once and reads custom complexity only
//! on object types, not on interface fields (`Account.transactions` is reached through
//! the `Account` interface from `me`), so a `first: 10000` or a hundred aliases of
//! `transactions(first: 100)` would pass it. This walk sees every path. It runs on the
//! parsed document, so an over-budget query is refused without a database round trip,
//! on HTTP and WebSocket alike (it is a schema extension).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Pos, ServerError, ServerResult, Value, Variables};

use super::types::{DEFAULT_PAGE, MAX_PAGE};
use crate::api::errors::ApiError;

/// Fields that return a page of a list: without `first` they return [`DEFAULT_PAGE`]
/// items. A unit test checks that every field of both schemas taking `first` is here.
pub(crate) const PAGED_FIELDS: &[&str] = &[
    "transactions",
    "transactionsByAddress",
    "onChainDeposits",
    "invoices",
];

/// Who may introspect a schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Introspection {
    /// Anyone (development).
    Allowed,
    /// Nobody (the public schema outside development).
    Refused,
    /// Only an authenticated admin (the staff schema outside development).
    AdminOnly,
}

/// The document checks, installed on a schema with `.extension(Guard { .. })`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Guard {
    /// Who may use `__schema` and `__type`.
    pub introspection: Introspection,
    /// Largest cost of one operation (see the module documentation).
    pub max_cost: usize,
}

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

fn refuse(e: ApiError) -> ServerError {
    e.to_graphql().into_server_error(Pos::default())
}

#[async_trait::async_trait]
impl Extension for Guard {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let may_introspect = match self.introspection {
            Introspection::Allowed => true,
            Introspection::Refused => false,
            Introspection::AdminOnly => ctx
                .data_opt::<super::admin::AdminMeta>()
                .and_then(|m| m.staff)
                .is_some_and(|s| s.role == crate::bank::StaffRole::Admin),
        };
        for (_, op) in doc.operations.iter() {
            let mut walk = Walk {
                doc: &doc,
                op: &op.node,
                variables,
                memo: HashMap::new(),
                open: Vec::new(),
                introspects: false,
            };
            let cost = walk.cost(&op.node.selection_set.node)?;
            if walk.introspects && !may_introspect {
                return Err(refuse(ApiError::introspection_disabled()));
            }
            if cost > self.max_cost {
                return Err(refuse(ApiError::query_too_complex(cost, self.max_cost)));
            }
        }
        Ok(doc)
    }
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    op: &'a OperationDefinition,
    variables: &'a Variables,
    /// Cost of each named fragment, once computed (a fragment spread many times is
    /// walked once, so nested spreads cannot make the walk itself exponential).
    memo: HashMap<&'a str, usize>,
    /// Fragments being walked, to stop at a cycle (validation refuses those later).
    open: Vec<&'a str>,
    introspects: bool,
}

impl<'a> Walk<'a> {
    fn cost(&mut self, set: &'a SelectionSet) -> ServerResult<usize> {
        let mut total = 0usize;
        for item in &set.items {
            let c = match &item.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    let name = f.name.node.as_str();
                    if name == "__schema" || name == "__type" {
                        self.introspects = true;
                    }
                    let mut items = if PAGED_FIELDS.contains(&name) {
                        usize::try_from(DEFAULT_PAGE).unwrap_or(usize::MAX)
                    } else {
                        1
                    };
                    for (arg, value) in &f.arguments {
                        let arg = arg.node.as_str();
                        if arg != "first" && arg != "last" {
                            continue;
                        }
                        let resolved = value
                            .node
                            .clone()
                            .into_const_with(|name| self.variable(&name).ok_or(()));
                        if let Ok(Value::Number(n)) = resolved
                            && let Some(n) = n.as_i64()
                        {
                            if n > i64::from(MAX_PAGE) {
                                return Err(refuse(ApiError::invalid(format!(
                                    "{arg} must be 1 to {MAX_PAGE} (asked {n})"
                                ))));
                            }
                            items = usize::try_from(n.max(1)).unwrap_or(1);
                        }
                    }
                    let children = self.cost(&f.selection_set.node)?;
                    items.saturating_mul(children).saturating_add(1)
                }
                Selection::InlineFragment(f) => self.cost(&f.node.selection_set.node)?,
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    if let Some(c) = self.memo.get(name) {
                        *c
                    } else if self.open.contains(&name) {
                        0
                    } else if let Some(def) = self.doc.fragments.get(&s.node.fragment_name.node) {
                        self.open.push(name);
                        let c = self.cost(&def.node.selection_set.node)?;
                        self.open.pop();
                        self.memo.insert(name, c);
                        c
                    } else {
                        0
                    }
                }
            };
            total = total.saturating_add(c);
        }
        Ok(total)
    }

    /// A variable's value, or its default.
    fn variable(&self, name: &Name) -> Option<Value> {
        if let Some(v) = self.variables.get(name) {
            return Some(v.clone());
        }
        self.op
            .variable_definitions
            .iter()
            .find(|d| d.node.name.node == *name)
            .and_then(|d| d.node.default_value.as_ref())
            .map(|v| v.node.clone())
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    use super::*;

    /// A new paginated field must be listed, or its default page would count as one item.
    #[test]
    fn every_field_taking_first_is_a_paged_field() {
        for sdl in [super::super::public_sdl(), super::super::admin_sdl()] {
            let doc = async_graphql::parser::parse_schema(&sdl).unwrap();
            let mut seen = 0;
            for def in &doc.definitions {
                let TypeSystemDefinition::Type(t) = def else {
                    continue;
                };
                let fields = match &t.node.kind {
                    TypeKind::Object(o) => &o.fields,
                    TypeKind::Interface(i) => &i.fields,
                    _ => continue,
                };
                for f in fields {
                    if f.node.arguments.iter().any(|a| a.node.name.node == "first") {
                        seen += 1;
                        assert!(
                            PAGED_FIELDS.contains(&f.node.name.node.as_str()),
                            "{}.{} takes `first` but is not in PAGED_FIELDS",
                            t.node.name.node,
                            f.node.name.node
                        );
                    }
                }
            }
            assert!(seen > 0, "the walk found no paged field at all");
        }
    }
}

//! The metrics label of a GraphQL request: its first root field, when that field is one of
//! the schema's (a bounded set); the operation name is the client's free text, never used.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, Selection, TypeKind, TypeSystemDefinition};

/// The root fields of one schema.
#[derive(Clone, Debug)]
pub(crate) struct RootFields {
    prefix: &'static str,
    names: Arc<HashSet<String>>,
}

impl RootFields {
    /// The root fields (`Query`, `Mutation`, `Subscription`) of a schema's SDL.
    pub(crate) fn from_sdl(prefix: &'static str, sdl: &str) -> RootFields {
        let mut names = HashSet::new();
        if let Ok(doc) = async_graphql::parser::parse_schema(sdl) {
            for def in doc.definitions {
                let TypeSystemDefinition::Type(t) = def else {
                    continue;
                };
                let root = matches!(
                    t.node.name.node.as_str(),
                    "Query" | "Mutation" | "Subscription"
                );
                if let (true, TypeKind::Object(o)) = (root, &t.node.kind) {
                    names.extend(o.fields.iter().map(|f| f.node.name.node.to_string()));
                }
            }
        }
        RootFields {
            prefix,
            names: Arc::new(names),
        }
    }

    /// `prefix:field` for the request's first root field, `prefix:other` otherwise.
    pub(crate) fn label(&self, req: &async_graphql::Request) -> String {
        let field = async_graphql::parser::parse_query(&req.query)
            .ok()
            .and_then(|doc| {
                let op = match (&doc.operations, req.operation_name.as_deref()) {
                    (DocumentOperations::Single(op), _) => Some(op.node.clone()),
                    (DocumentOperations::Multiple(ops), Some(name)) => {
                        ops.get(name).map(|o| o.node.clone())
                    }
                    (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
                        ops.values().next().map(|o| o.node.clone())
                    }
                    _ => None,
                }?;
                op.selection_set
                    .node
                    .items
                    .iter()
                    .find_map(|s| match &s.node {
                        Selection::Field(f) => Some(f.node.name.node.to_string()),
                        _ => None,
                    })
            })
            .filter(|f| self.names.contains(f));
        format!("{}:{}", self.prefix, field.as_deref().unwrap_or("other"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_schema_fields_become_labels() {
        let r = RootFields::from_sdl(
            "graphql",
            "type Query { me: Int, globals: Int }\ntype Mutation { userLogin: Int }\n",
        );
        let req = |q: &str| async_graphql::Request::new(q);
        assert_eq!(r.label(&req("{ me }")), "graphql:me");
        assert_eq!(
            r.label(&req("mutation Anything { userLogin }")),
            "graphql:userLogin"
        );
        assert_eq!(r.label(&req("{ secretValue123 }")), "graphql:other");
        assert_eq!(r.label(&req("not graphql")), "graphql:other");
        let two = req("query A { me } query B { globals }");
        assert_eq!(r.label(&two), "graphql:other");
        assert_eq!(r.label(&two.operation_name("B")), "graphql:globals");
    }
}

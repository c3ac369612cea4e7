//! One check of every string a GraphQL request brings, before anything runs: the arguments written in the query
//! (at any depth of input objects and lists) and the variables. A string with a NUL character (`\u0000`) can never
//! be stored or compared by PostgreSQL, and one longer than [`GRAPHQL_ARGUMENT`] is no name, URL, glob, reason
//! or filter Lathe keeps; either is refused with `BAD_USER_INPUT` naming the argument, instead of reaching a
//! resolver whose query would fail as `INTERNAL`. The rule is the one every way in shares (`crate::input`).

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, Pos, ServerError, ServerResult, Value, Variables};

use crate::input::GRAPHQL_ARGUMENT;

/// The extension: `Schema::build(..).extension(TextGuard)`.
pub struct TextGuard;

impl ExtensionFactory for TextGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TextGuard)
    }
}

// async-graphql's own (hidden) re-export of the macro its `Extension` trait is declared with: the same version by
// construction, and no dependency added to this crate.
#[async_graphql::async_trait::async_trait]
impl Extension for TextGuard {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        for (name, value) in variables.iter() {
            check(&format!("${name}"), value, None)?;
        }
        for (_, operation) in document.operations.iter() {
            for definition in &operation.node.variable_definitions {
                if let Some(default) = &definition.node.default_value {
                    let path = format!("${}", definition.node.name.node);
                    check(&path, &default.node, Some(default.pos))?;
                }
            }
            check_selections(&operation.node.selection_set.node)?;
        }
        for fragment in document.fragments.values() {
            check_selections(&fragment.node.selection_set.node)?;
        }
        Ok(document)
    }
}

/// Checks the arguments of every field of a selection set and of the fields beneath it.
fn check_selections(set: &SelectionSet) -> ServerResult<()> {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    // Variables stand for values checked above.
                    let literal = value
                        .node
                        .clone()
                        .into_const_with(|_| Ok::<_, Infallible>(Value::Null))
                        .unwrap_or_else(|never| match never {});
                    let path = format!("{}({})", field.node.name.node, name.node);
                    check(&path, &literal, Some(value.pos))?;
                }
                check_selections(&field.node.selection_set.node)?;
            }
            Selection::InlineFragment(fragment) => {
                check_selections(&fragment.node.selection_set.node)?;
            }
            // Fragments are checked once, from the document's list.
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

/// Checks every string in `value`, naming the first bad one by its path from `path`.
fn check(path: &str, value: &Value, pos: Option<Pos>) -> ServerResult<()> {
    match value {
        Value::String(text) => GRAPHQL_ARGUMENT
            .apply(text)
            .map(|_| ())
            .map_err(|problem| refused(path, &problem, pos)),
        Value::List(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            let mut at = path.to_owned();
            let _ = write!(at, "[{index}]");
            check(&at, item, pos)
        }),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(name, item)| check(&format!("{path}.{name}"), item, pos)),
        _ => Ok(()),
    }
}

fn refused(path: &str, problem: &str, pos: Option<Pos>) -> ServerError {
    let mut error = ServerError::new(format!("argument `{path}` {problem}"), pos);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    extensions.set("argument", path);
    error.extensions = Some(extensions);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Name;

    fn object(name: &str, value: Value) -> Value {
        Value::Object([(Name::new(name), value)].into_iter().collect())
    }

    #[test]
    fn the_bad_string_is_named_by_its_path() {
        let input = object(
            "repositoryUrls",
            Value::List(vec![Value::from("ok"), Value::from("bad\0")]),
        );
        let error = check("createProject(input)", &input, None).unwrap_err();
        assert_eq!(
            error.message,
            "argument `createProject(input).repositoryUrls[1]` contains a NUL character (\\u0000), which \
             cannot be stored"
        );
        let long = Value::from("x".repeat(GRAPHQL_ARGUMENT.max_chars + 1));
        assert!(check("$name", &long, None)
            .unwrap_err()
            .message
            .contains("at most"));
        assert!(check("$name", &Value::from("fine"), None).is_ok());
    }
}

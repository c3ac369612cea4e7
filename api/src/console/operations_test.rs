//! The console's GraphQL operations (`api/console/operations.graphql`) against the schema: each one parses and
//! passes the schema's validation, and every operation a script names exists.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::{BaseType, DocumentOperations, Type};
use async_graphql::{Name, ServerError, ValidationResult, Value, Variables};

use crate::graphql::LatheSchema;

/// Stops a request once validation has passed, so that nothing resolves (no state, no credentials needed).
struct StopAfterValidation;

const VALIDATED: &str = "validated; not executed";

impl ExtensionFactory for StopAfterValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopAfterValidationExtension)
    }
}

struct StopAfterValidationExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for StopAfterValidationExtension {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await?;
        Err(vec![ServerError::new(VALIDATED, None)])
    }
}

/// A stand-in value of a variable's type: the budget reads list arguments (a bulk mutation's ids) while validating.
fn sample(ty: &Type) -> Value {
    match &ty.base {
        BaseType::List(inner) => Value::List(vec![sample(inner)]),
        BaseType::Named(name) => match name.as_str() {
            "ID" | "String" => Value::String("00000000-0000-0000-0000-000000000000".to_owned()),
            "Int" => Value::Number(1.into()),
            "Boolean" => Value::Boolean(false),
            // The input objects the console sends, with their required fields (the values are checked too).
            "CreateProjectInput" => object(serde_json::json!({ "name": "x" })),
            "UpdateProjectInput" => object(serde_json::json!({})),
            "CreateApiKeyInput" => object(serde_json::json!({ "name": "x", "scopes": [] })),
            "AzureDevOpsInput" => object(serde_json::json!({
                "organizationUrl": "https://dev.azure.com/x", "project": "x", "personalAccessToken": "x"
            })),
            _ => Value::Null,
        },
    }
}

fn object(json: serde_json::Value) -> Value {
    Value::from_json(json).expect("a GraphQL value")
}

/// Stand-in values for every variable of the operation `name` in `document`.
fn sample_variables(document: &str, name: &str) -> Variables {
    let parsed = async_graphql::parser::parse_query(document).expect("the operation parses");
    let DocumentOperations::Multiple(operations) = parsed.operations else {
        return Variables::default();
    };
    let operation = operations
        .get(name)
        .expect("the operation is in the document");
    let mut variables = Variables::default();
    for definition in &operation.node.variable_definitions {
        let value = sample(&definition.node.var_type.node);
        variables.insert(Name::new(definition.node.name.node.as_str()), value);
    }
    variables
}

fn operation_names(document: &str) -> Vec<String> {
    let parsed = async_graphql::parser::parse_query(document).expect("operations.graphql parses");
    match parsed.operations {
        DocumentOperations::Multiple(operations) => {
            operations.keys().map(ToString::to_string).collect()
        }
        DocumentOperations::Single(_) => panic!("every console operation has a name"),
    }
}

#[tokio::test]
async fn every_console_operation_is_valid_against_the_schema() {
    let schema = LatheSchema::build(Default::default(), Default::default(), Default::default())
        .extension(StopAfterValidation)
        .finish();
    let document = super::assets::operations();
    let names = operation_names(document);
    assert!(names.len() > 10, "the console's operations are all there");
    for name in &names {
        // One operation at a time, as the console sends them.
        let text =
            super::assets::operation(document, name).expect("the operation is found by name");
        let response = schema
            .execute(
                async_graphql::Request::new(text)
                    .operation_name(name)
                    .variables(sample_variables(document, name)),
            )
            .await;
        let messages: Vec<&str> = response.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, vec![VALIDATED], "operation {name} is not valid");
    }
}

#[test]
fn every_operation_a_script_sends_is_in_the_document() {
    let names = operation_names(super::assets::operations());
    for (file, script) in super::assets::scripts() {
        // Scripts name operations as `gql('Name'`, `live('Name'`, `subscribe('Name'` and `subscription: 'Name'`.
        for call in ["gql('", "live('", "subscribe('", "subscription: '"] {
            for part in script.split(call).skip(1) {
                let name = part.split('\'').next().unwrap_or_default();
                assert!(
                    names.iter().any(|n| n == name),
                    "{file} sends {name}, which operations.graphql lacks"
                );
            }
        }
    }
}

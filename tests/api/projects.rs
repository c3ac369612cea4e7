//! Projects through GraphQL.

use serde_json::json;

use lathe_tests::{error_code, spawn_app};

#[tokio::test]
async fn a_project_is_created_listed_and_updated() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let created = app
        .graphql_ok(
            &org.key,
            r#"mutation { createProject(input: {
                name: " Web ", url: "https://dev.azure.com/fabrikam/web",
                repositoryUrls: ["https://dev.azure.com/fabrikam/web/_git/web"],
                azureProjectId: "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"}) { id name url repositoryUrls azureProjectId } }"#,
            json!({}),
        )
        .await;
    let project = &created["createProject"];
    assert_eq!(project["name"], "Web");
    assert_eq!(
        project["repositoryUrls"],
        json!(["https://dev.azure.com/fabrikam/web/_git/web"])
    );
    let id = project["id"].as_str().unwrap();

    let updated = app
        .graphql_ok(
            &org.key,
            r#"mutation($id: ID!) { updateProject(id: $id, input: {name: "Web app", azureRepositoryIds: ["r1"]}) {
                name url azureRepositoryIds } }"#,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(updated["updateProject"]["name"], "Web app");
    assert_eq!(
        updated["updateProject"]["url"],
        "https://dev.azure.com/fabrikam/web"
    );
    assert_eq!(
        updated["updateProject"]["azureRepositoryIds"],
        json!(["r1"])
    );

    let listed = app
        .graphql_ok(&org.key, "{ projects { id name } }", json!({}))
        .await;
    assert_eq!(listed["projects"], json!([{ "id": id, "name": "Web app" }]));
    let one = app
        .graphql_ok(
            &org.key,
            "query($id: ID!) { project(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(one["project"]["name"], "Web app");
}

#[tokio::test]
async fn invalid_project_settings_are_bad_user_input() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    for input in [
        r#"{name: "  "}"#,
        r#"{name: "Web", url: "not a url"}"#,
        r#"{name: "Web", repositoryUrls: ["ftp://example.com/x"]}"#,
    ] {
        let body = app
            .graphql(
                Some(&org.key),
                &format!("mutation {{ createProject(input: {input}) {{ id }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}: {body}");
    }
    let listed = app
        .graphql_ok(&org.key, "{ projects { id } }", json!({}))
        .await;
    assert_eq!(listed["projects"], json!([]), "nothing half-written");
}

#[tokio::test]
async fn updating_an_unknown_project_is_not_found() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let body = app
        .graphql(
            Some(&org.key),
            r#"mutation { updateProject(id: "00000000-0000-4000-8000-000000000000", input: {name: "x"}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
}

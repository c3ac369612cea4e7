//! Read model of Azure DevOps connections, the encrypted token store, and the work-item links.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::azure::{AzureDevOpsSettings, FieldMapping, MappedField};

/// A project's connection as stored, without its token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionRow {
    pub project_id: Uuid,
    pub organization_id: Uuid,
    pub organization_url: String,
    pub azure_project: String,
    pub work_item_type: String,
    pub mapped_sources: Vec<String>,
    pub mapped_fields: Vec<String>,
    pub auto_create_work_items: bool,
    pub post_pull_request_comments: bool,
    pub failure_threshold: i32,
    pub connected_at: DateTime<Utc>,
}

impl ConnectionRow {
    /// The field mappings.
    pub fn mappings(&self) -> Vec<FieldMapping> {
        self.mapped_sources
            .iter()
            .zip(&self.mapped_fields)
            .filter_map(|(source, field)| {
                Some(FieldMapping {
                    source: source_from_name(source)?,
                    field: field.clone(),
                })
            })
            .collect()
    }
}

/// The stable name of a mapped field in the read model.
pub fn source_name(source: MappedField) -> &'static str {
    match source {
        MappedField::TestCaseTitle => "test_case_title",
        MappedField::Priority => "priority",
        MappedField::TestSteps => "test_steps",
        MappedField::TesterNotes => "tester_notes",
        MappedField::Environment => "environment",
    }
}

fn source_from_name(name: &str) -> Option<MappedField> {
    MappedField::ALL
        .into_iter()
        .find(|f| source_name(*f) == name)
}

pub(crate) async fn upsert_connection(
    conn: &mut PgConnection,
    project_id: Uuid,
    settings: &AzureDevOpsSettings,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let sources: Vec<&str> = settings
        .field_mappings
        .iter()
        .map(|m| source_name(m.source))
        .collect();
    let fields: Vec<&str> = settings
        .field_mappings
        .iter()
        .map(|m| m.field.as_str())
        .collect();
    sqlx::query(
        "INSERT INTO azure_connections (project_id, organization_id, organization_url, azure_project, work_item_type,
            mapped_sources, mapped_fields, auto_create_work_items, post_pull_request_comments, failure_threshold,
            connected_at)
         SELECT $1, organization_id, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM projects WHERE project_id = $1
         ON CONFLICT (project_id) DO UPDATE SET organization_url = $2, azure_project = $3, work_item_type = $4,
            mapped_sources = $5, mapped_fields = $6, auto_create_work_items = $7, post_pull_request_comments = $8,
            failure_threshold = $9, connected_at = $10",
    )
    .bind(project_id)
    .bind(&settings.organization_url)
    .bind(&settings.project)
    .bind(&settings.work_item_type)
    .bind(sources)
    .bind(fields)
    .bind(settings.auto_create_work_items)
    .bind(settings.post_pull_request_comments)
    .bind(settings.failure_threshold as i32)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn delete_connection(
    conn: &mut PgConnection,
    project_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM azure_connections WHERE project_id = $1")
        .bind(project_id)
        .execute(conn)
        .await?;
    Ok(())
}

const COLUMNS: &str = "project_id, organization_id, organization_url, azure_project, work_item_type, mapped_sources, \
    mapped_fields, auto_create_work_items, post_pull_request_comments, failure_threshold, connected_at";

/// A project's connection, if it has one.
pub async fn connection(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Option<ConnectionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM azure_connections WHERE project_id = $1"
    ))
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// Stores a project's token, encrypted by the caller.
pub async fn store_credential(
    pool: &PgPool,
    project_id: Uuid,
    organization_id: Uuid,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.azure_credentials (project_id, organization_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)
         ON CONFLICT (project_id) DO UPDATE SET nonce = $3, ciphertext = $4, updated_at = now()",
    )
    .bind(project_id)
    .bind(organization_id)
    .bind(nonce)
    .bind(ciphertext)
    .execute(pool)
    .await?;
    Ok(())
}

/// A project's encrypted token: `(nonce, ciphertext)`.
pub async fn credential(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT nonce, ciphertext FROM public.azure_credentials WHERE project_id = $1")
        .bind(project_id)
        .fetch_optional(pool)
        .await
}

/// Forgets a project's token.
pub async fn delete_credential(pool: &PgPool, project_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM public.azure_credentials WHERE project_id = $1")
        .bind(project_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The work item currently linked to a failing test (by title) of a project.
pub async fn linked_work_item(
    pool: &PgPool,
    project_id: Uuid,
    title: &str,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT work_item_id, url FROM work_item_links
         WHERE project_id = $1 AND title_md5 = md5($2) AND title = $2",
    )
    .bind(project_id)
    .bind(title)
    .fetch_optional(pool)
    .await
}

pub(crate) async fn link_work_item(
    conn: &mut PgConnection,
    build_id: Uuid,
    test_result_ids: &[Uuid],
    work_item_id: u64,
    url: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE test_results SET work_item_id = $2, work_item_url = $3 WHERE test_result_id = ANY($1)")
        .bind(test_result_ids)
        .bind(work_item_id as i64)
        .bind(url)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO work_item_links (project_id, title, work_item_id, url, linked_at)
         SELECT b.project_id, t.title, $3, $4, $5 FROM test_results t JOIN builds b ON b.build_id = t.build_id
         WHERE t.test_result_id = ANY($1) AND b.build_id = $2 AND b.project_id IS NOT NULL
         ON CONFLICT (project_id, title_md5) DO UPDATE SET work_item_id = $3, url = $4, linked_at = $5",
    )
    .bind(test_result_ids)
    .bind(build_id)
    .bind(work_item_id as i64)
    .bind(url)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A build moved to another project takes its work items along: each of its failing tests linked to a work item
/// becomes that project's link for the test's title, unless the project already tracks the title with a work item
/// of its own. The newest result per title decides, so that a rebuild links exactly what the live model did.
pub(crate) async fn carry_work_item_links(
    conn: &mut PgConnection,
    build_id: Uuid,
    project_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO work_item_links (project_id, title, work_item_id, url, linked_at)
         SELECT DISTINCT ON (title) $2, title, work_item_id, work_item_url, $3 FROM test_results
         WHERE build_id = $1 AND work_item_id IS NOT NULL AND work_item_url IS NOT NULL
         ORDER BY title, ordinal DESC
         ON CONFLICT (project_id, title_md5) DO NOTHING",
    )
    .bind(build_id)
    .bind(project_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

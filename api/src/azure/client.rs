//! Calls to the Azure DevOps REST API (7.1): projects, work item types, work items, WIQL, pull-request statuses and
//! threads. Authentication is HTTP Basic with an empty user name and the personal access token as password.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use url::Url;

use super::egress::{Egress, Refused};

const API_VERSION: &str = "7.1";
/// The build retention API exists in a preview version only.
const RETENTION_API_VERSION: &str = "7.1-preview.1";

/// Where and as whom to call.
#[derive(Clone)]
pub struct Target {
    /// `https://dev.azure.com/{org}` (no trailing slash).
    pub organization_url: String,
    pub project: String,
    pub token: SecretString,
}

/// How a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AzureError {
    /// Worth another try: throttling (429), unavailability (5xx), a timeout or a broken connection.
    #[error("{message}")]
    Retryable {
        status: Option<u16>,
        retry_after_secs: Option<f64>,
        message: String,
    },
    /// Refused for good: bad token, missing project or type, invalid body, inactive pull request.
    #[error("{message}")]
    Rejected { status: u16, message: String },
}

impl AzureError {
    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Retryable { status, .. } => *status,
            Self::Rejected { status, .. } => Some(*status),
        }
    }
}

/// A work item's id and web address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: u64,
    pub url: String,
}

/// The HTTP client. Every call goes through [`Egress`]: to Azure DevOps only, never to a private address unless
/// the operator allows it, never redirected to another host.
#[derive(Clone)]
pub struct AzureClient {
    http: reqwest::Client,
    egress: Arc<Egress>,
}

impl AzureClient {
    /// A client whose every call gives up after `timeout` and goes only where `egress` allows.
    pub fn new(timeout: Duration, egress: Egress) -> Self {
        let egress = Arc::new(egress);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("lathe/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(egress.resolver())
            .redirect(Egress::redirect_policy())
            // A proxy would resolve and connect on our behalf, out of reach of the address checks.
            .no_proxy()
            .build()
            .expect("a default HTTP client");
        Self { http, egress }
    }

    /// Checks the token and the project: `Ok` when the project is reachable with the token.
    pub async fn check_project(&self, target: &Target) -> Result<(), AzureError> {
        let url = url(target, &["_apis", "projects", &target.project], false)?;
        self.send(self.http.get(url), target).await.map(|_| ())
    }

    /// The reference names of a work item type's fields.
    pub async fn work_item_type_fields(
        &self,
        target: &Target,
        work_item_type: &str,
    ) -> Result<Vec<String>, AzureError> {
        let url = url(
            target,
            &["_apis", "wit", "workitemtypes", work_item_type, "fields"],
            true,
        )?;
        let body = self.send(self.http.get(url), target).await?;
        Ok(body["value"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f["referenceName"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Creates a work item from a JSON Patch document.
    pub async fn create_work_item(
        &self,
        target: &Target,
        work_item_type: &str,
        patch: &[Value],
    ) -> Result<WorkItem, AzureError> {
        let url = url(
            target,
            &["_apis", "wit", "workitems", &format!("${work_item_type}")],
            true,
        )?;
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json-patch+json")
            .body(serde_json::to_vec(patch).unwrap_or_default());
        let body = self.send(request, target).await?;
        work_item(&body, target)
    }

    /// Finds the work item carrying `tag`, if one exists (to avoid a second one after an unknown outcome).
    pub async fn find_by_tag(
        &self,
        target: &Target,
        tag: &str,
    ) -> Result<Option<WorkItem>, AzureError> {
        let url = url(target, &["_apis", "wit", "wiql"], true)?;
        let query = format!(
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project AND [System.Tags] CONTAINS '{}'",
            tag.replace('\'', "''")
        );
        let body = self
            .send(self.http.post(url).json(&json!({ "query": query })), target)
            .await?;
        Ok(body["workItems"]
            .as_array()
            .and_then(|items| items.first())
            .and_then(|item| item["id"].as_u64())
            .map(|id| WorkItem {
                id,
                url: web_url(target, id),
            }))
    }

    /// A work item's `System.State`, or `None` when it no longer exists.
    pub async fn work_item_state(
        &self,
        target: &Target,
        id: u64,
    ) -> Result<Option<String>, AzureError> {
        let mut url = url(
            target,
            &["_apis", "wit", "workitems", &id.to_string()],
            true,
        )?;
        url.query_pairs_mut().append_pair("fields", "System.State");
        match self.send(self.http.get(url), target).await {
            Ok(body) => Ok(body["fields"]["System.State"].as_str().map(str::to_owned)),
            Err(AzureError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The project's build retention settings (`GET {org}/{project}/_apis/build/retention`): the `value` of
    /// `purgeRuns`, `purgePullRequestRuns` and `retainRunsPerProtectedBranch`. Reading them needs the token's
    /// Build (Read) scope.
    pub async fn build_retention(
        &self,
        target: &Target,
    ) -> Result<domain::project::AzureRetention, AzureError> {
        let mut url = url(target, &["_apis", "build", "retention"], true)?;
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("api-version", RETENTION_API_VERSION);
        let body = self.send(self.http.get(url), target).await?;
        let value = |name: &str| {
            body[name]["value"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| AzureError::Rejected {
                    status: 200,
                    message: format!(
                        "Azure DevOps answered the retention settings without a number in `{name}.value`"
                    ),
                })
        };
        Ok(domain::project::AzureRetention {
            purge_runs_days: value("purgeRuns")?,
            purge_pull_request_runs_days: value("purgePullRequestRuns")?,
            retain_runs_per_protected_branch: value("retainRunsPerProtectedBranch")?,
        })
    }

    /// Posts a pull-request status.
    pub async fn post_pull_request_status(
        &self,
        target: &Target,
        repository_id: &str,
        pull_request: i64,
        status: &Value,
    ) -> Result<(), AzureError> {
        let pr = pull_request.to_string();
        let url = url(
            target,
            &[
                "_apis",
                "git",
                "repositories",
                repository_id,
                "pullRequests",
                &pr,
                "statuses",
            ],
            true,
        )?;
        self.send(self.http.post(url).json(status), target)
            .await
            .map(|_| ())
    }

    /// Posts a comment thread on a pull request.
    pub async fn post_pull_request_thread(
        &self,
        target: &Target,
        repository_id: &str,
        pull_request: i64,
        content: &str,
    ) -> Result<(), AzureError> {
        let pr = pull_request.to_string();
        let url = url(
            target,
            &[
                "_apis",
                "git",
                "repositories",
                repository_id,
                "pullRequests",
                &pr,
                "threads",
            ],
            true,
        )?;
        let body = json!({
            "comments": [{ "parentCommentId": 0, "content": content, "commentType": "text" }],
            "status": "active",
        });
        self.send(self.http.post(url).json(&body), target)
            .await
            .map(|_| ())
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        target: &Target,
    ) -> Result<Value, AzureError> {
        let credentials = STANDARD.encode(format!(":{}", target.token.expose_secret()));
        let request = request
            .header("authorization", format!("Basic {credentials}"))
            .header("accept", "application/json")
            .build()
            .map_err(|_| AzureError::Rejected {
                status: 0,
                message: "not a usable organization URL".to_owned(),
            })?;
        // Checked here, where every call passes: the connection check and the outbox worker's calls alike.
        self.egress
            .check_url(request.url())
            .map_err(|refused| AzureError::Rejected {
                status: 0,
                message: refused.0,
            })?;
        let response = self.http.execute(request).await.map_err(|error| {
            // The resolver refused every address the name has: for good, with its reason.
            if let Some(refused) = refused_in(&error) {
                return AzureError::Rejected {
                    status: 0,
                    message: refused.0.clone(),
                };
            }
            AzureError::Retryable {
                status: None,
                retry_after_secs: None,
                message: if error.is_timeout() {
                    "Azure DevOps did not answer in time".to_owned()
                } else {
                    format!("cannot reach Azure DevOps: {}", error.without_url())
                },
            }
        })?;
        let status = response.status().as_u16();
        let retry_after_secs = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = || match azure_error_message(&body) {
            Some(detail) => format!("Azure DevOps answered {status}: {detail}"),
            None => format!("Azure DevOps answered {status}"),
        };
        match status {
            // A bad token is answered 203 with a sign-in page instead of JSON.
            203 => Err(AzureError::Rejected {
                status,
                message: "Azure DevOps rejected the personal access token (it answered with a sign-in page)".to_owned(),
            }),
            200..=299 => Ok(body),
            429 | 500..=599 | 408 => Err(AzureError::Retryable {
                status: Some(status),
                retry_after_secs,
                message: message(),
            }),
            401 => Err(AzureError::Rejected {
                status,
                message: "Azure DevOps rejected the personal access token (401)".to_owned(),
            }),
            300..=399 => Err(AzureError::Rejected {
                status,
                message: format!(
                    "Azure DevOps answered {status}, a redirect to another host, which is not followed: check \
                     organizationUrl"
                ),
            }),
            _ => Err(AzureError::Rejected {
                status,
                message: message(),
            }),
        }
    }
}

/// Azure DevOps' own error text, from an answer shaped as its errors are (`message` with `typeKey` or
/// `typeName`), shortened. Any other body is not quoted: the caller chose the URL, and what some other service
/// answers is none of the caller's business.
fn azure_error_message(body: &Value) -> Option<String> {
    let message = body["message"].as_str()?;
    if body["typeKey"].as_str().is_none() && body["typeName"].as_str().is_none() {
        return None;
    }
    Some(message.chars().take(300).collect())
}

/// The egress refusal behind a failed request, if that is why it failed.
fn refused_in(error: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = current.source();
    }
    None
}

/// `{organization}/[{project}/]{segments…}?api-version=7.1`, each segment percent-encoded.
fn url(target: &Target, segments: &[&str], in_project: bool) -> Result<Url, AzureError> {
    let invalid = || AzureError::Rejected {
        status: 0,
        message: format!("not a usable organization URL: {}", target.organization_url),
    };
    let mut url = Url::parse(&format!(
        "{}/",
        target.organization_url.trim_end_matches('/')
    ))
    .map_err(|_| invalid())?;
    {
        let mut path = url.path_segments_mut().map_err(|_| invalid())?;
        path.pop_if_empty();
        if in_project {
            path.push(&target.project);
        }
        for segment in segments {
            path.push(segment);
        }
    }
    url.query_pairs_mut()
        .append_pair("api-version", API_VERSION);
    Ok(url)
}

fn web_url(target: &Target, id: u64) -> String {
    format!(
        "{}/{}/_workitems/edit/{id}",
        target.organization_url.trim_end_matches('/'),
        url_segment(&target.project)
    )
}

fn url_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn work_item(body: &Value, target: &Target) -> Result<WorkItem, AzureError> {
    let id = body["id"].as_u64().ok_or_else(|| AzureError::Retryable {
        status: Some(200),
        retry_after_secs: None,
        message: "Azure DevOps answered without a work item id".to_owned(),
    })?;
    let url = body["_links"]["html"]["href"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| web_url(target, id));
    Ok(WorkItem { id, url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_rest_reference() {
        let target = Target {
            organization_url: "https://dev.azure.com/fabrikam/".to_owned(),
            project: "Fabrikam Web".to_owned(),
            token: SecretString::from("x".to_owned()),
        };
        let create = url(&target, &["_apis", "wit", "workitems", "$User Story"], true).unwrap();
        assert_eq!(
            create.as_str(),
            "https://dev.azure.com/fabrikam/Fabrikam%20Web/_apis/wit/workitems/$User%20Story?api-version=7.1"
        );
        let project = url(&target, &["_apis", "projects", "Fabrikam Web"], false).unwrap();
        assert_eq!(
            project.as_str(),
            "https://dev.azure.com/fabrikam/_apis/projects/Fabrikam%20Web?api-version=7.1"
        );
    }
}

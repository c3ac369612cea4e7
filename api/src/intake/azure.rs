//! Reading Azure DevOps service-hook deliveries: `build.complete` (resourceVersion 2.0 and the 1.0 XAML-era shape)
//! and `ms.vss-pipelines.run-state-changed-event`. Payloads vary by version and by the subscription's "resource
//! details to send", so every field is optional here and unknown fields are ignored.

use serde_json::Value;

use domain::build_queue::{BuildDetails, BuildSource, PullRequestRef};
use domain::matching::BuildSignals;
use domain::urls::collection_key;

use super::pruned::{self, Shape};
use super::BuildSubmission;

/// The event types that create builds.
pub const BUILD_COMPLETE: &str = "build.complete";
pub const RUN_STATE_CHANGED: &str = "ms.vss-pipelines.run-state-changed-event";

/// Provenance of a delivery, for the delivery log and the events' metadata.
#[derive(Debug, Clone, Default)]
pub struct DeliveryMeta {
    pub event_type: Option<String>,
    pub subscription_id: Option<String>,
    pub notification_id: Option<String>,
    pub event_id: Option<String>,
}

/// What a delivery asks for.
#[derive(Debug)]
pub enum Delivery {
    /// Understood, and deliberately not a build; the text says why.
    Ignore(String),
    Build(Box<BuildSubmission>),
}

/// A link object's web address: `_links.web.href`.
const WEB_LINK: Shape = Shape::Fields(&[("web", Shape::Fields(&[("href", Shape::All)]))]);
const NAME: Shape = Shape::Fields(&[("name", Shape::All)]);

/// Every part of a delivery that [`meta`] and [`interpret`] read; keep it in step with them.
const READ: Shape = Shape::Fields(&[
    ("eventType", Shape::All),
    ("subscriptionId", Shape::All),
    ("notificationId", Shape::All),
    ("id", Shape::All),
    ("resourceContainers", Shape::All),
    (
        "resource",
        Shape::Fields(&[
            ("id", Shape::All),
            ("buildNumber", Shape::All),
            ("result", Shape::All),
            ("status", Shape::All),
            ("sourceBranch", Shape::All),
            ("sourceVersion", Shape::All),
            ("sourceGetVersion", Shape::All),
            ("url", Shape::All),
            ("_links", WEB_LINK),
            ("definition", NAME),
            (
                "project",
                Shape::Fields(&[("id", Shape::All), ("name", Shape::All)]),
            ),
            (
                "repository",
                Shape::Fields(&[("id", Shape::All), ("url", Shape::All)]),
            ),
            ("triggerInfo", Shape::All),
            ("pipeline", NAME),
            (
                "run",
                Shape::Fields(&[
                    ("id", Shape::All),
                    ("name", Shape::All),
                    ("state", Shape::All),
                    ("result", Shape::All),
                    ("url", Shape::All),
                    ("_links", WEB_LINK),
                    ("pipeline", NAME),
                ]),
            ),
        ]),
    ),
]);

/// Parses a delivery's body, keeping only what [`meta`] and [`interpret`] read.
pub fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    pruned::parse(body, READ)
}

/// Reads the provenance fields every service-hook event carries.
pub fn meta(body: &Value) -> DeliveryMeta {
    DeliveryMeta {
        event_type: text(&body["eventType"]),
        subscription_id: text(&body["subscriptionId"]),
        notification_id: number_or_text(&body["notificationId"]),
        event_id: text(&body["id"]),
    }
}

/// Interprets a parsed delivery. `Err` is for bodies that are not service-hook events at all.
pub fn interpret(body: &Value, meta: &DeliveryMeta) -> Result<Delivery, String> {
    if !body.is_object() {
        return Err(
            "the body must be a JSON object: an Azure DevOps service-hook event".to_owned(),
        );
    }
    let Some(event_type) = meta.event_type.as_deref() else {
        return Err(
            "`eventType` is missing: this is not an Azure DevOps service-hook event".to_owned(),
        );
    };
    if meta
        .subscription_id
        .as_deref()
        .is_some_and(|id| id.chars().all(|c| c == '0' || c == '-'))
    {
        return Ok(Delivery::Ignore(
            "test delivery from the service hook's Test button (all-zero subscriptionId): the connection and the \
             key work; nothing was created"
                .to_owned(),
        ));
    }
    if event_type != BUILD_COMPLETE && event_type != RUN_STATE_CHANGED {
        return Ok(Delivery::Ignore(format!(
            "event type `{event_type}` creates no build; subscribe to `{BUILD_COMPLETE}` (Build completed)"
        )));
    }
    let resource = &body["resource"];
    if !resource.is_object() {
        return Ok(Delivery::Ignore(
            "the delivery carries no resource (\"Resource details to send\" is None or Minimal); set it to All so \
             that builds can be created"
                .to_owned(),
        ));
    }
    if event_type == RUN_STATE_CHANGED {
        return Ok(run_state_changed(body, resource));
    }
    Ok(build_complete(body, resource))
}

fn build_complete(body: &Value, resource: &Value) -> Delivery {
    let Some(build_id) = number_or_text(&resource["id"]) else {
        return Delivery::Ignore("the build in this delivery has no id".to_owned());
    };
    let Some(collection) = collection(body, resource) else {
        return Delivery::Ignore(
            "the delivery names no Azure DevOps organization or collection".to_owned(),
        );
    };
    // resourceVersion 1.0 (XAML) has the outcome in `status` and the branch and commit only in
    // `sourceGetVersion: "LG:refs/heads/master:<sha>"`.
    let (legacy_branch, legacy_commit) = text(&resource["sourceGetVersion"])
        .map(|version| split_source_get_version(&version))
        .unwrap_or_default();
    let branch = text(&resource["sourceBranch"]).or(legacy_branch);
    let result = text(&resource["result"]).or_else(|| text(&resource["status"]));
    let definition = text(&resource["definition"]["name"]);
    let number = text(&resource["buildNumber"]).unwrap_or_else(|| build_id.clone());
    let name = build_name(definition, number);
    let project_name = text(&resource["project"]["name"]);
    let repository_url = text(&resource["repository"]["url"]);
    // A pull-request build runs on `refs/pull/N/merge`; its filters judge the branch the pull request comes from.
    let filter_branch = text(&resource["triggerInfo"]["pr.sourceBranch"]);
    let details = BuildDetails {
        name,
        pull_request: pull_request(resource, branch.as_deref()),
        branch,
        commit_sha: text(&resource["sourceVersion"]).or(legacy_commit),
        url: text(&resource["_links"]["web"]["href"]).or_else(|| text(&resource["url"])),
        result,
    };
    let signals = BuildSignals {
        azure_project_id: text(&resource["project"]["id"])
            .or_else(|| text(&body["resourceContainers"]["project"]["id"])),
        azure_repository_id: text(&resource["repository"]["id"]),
        project_urls: project_urls(body, resource, project_name.as_deref()),
        project_name,
        repository_urls: repository_url.into_iter().collect(),
        requested_project: None,
    };
    Delivery::Build(Box::new(BuildSubmission {
        source: BuildSource::AzureDevOps,
        source_key: format!("{collection}/{build_id}"),
        details,
        signals,
        release: None,
        results: None,
        filter_branch,
    }))
}

fn run_state_changed(body: &Value, resource: &Value) -> Delivery {
    let run = &resource["run"];
    let state = text(&run["state"]).unwrap_or_default();
    if !state.eq_ignore_ascii_case("completed") {
        return Delivery::Ignore(format!(
            "the run is `{state}`; only completed runs create builds"
        ));
    }
    // A YAML pipeline run is a build: its id is the build id that `build.complete` carries for the same run.
    let Some(build_id) = number_or_text(&run["id"]) else {
        return Delivery::Ignore("the run in this delivery has no id".to_owned());
    };
    let Some(collection) = collection(body, run) else {
        return Delivery::Ignore(
            "the delivery names no Azure DevOps organization or collection".to_owned(),
        );
    };
    let pipeline = text(&resource["pipeline"]["name"]).or_else(|| text(&run["pipeline"]["name"]));
    let run_name = text(&run["name"]).unwrap_or_else(|| build_id.clone());
    let details = BuildDetails {
        name: build_name(pipeline, run_name),
        url: text(&run["_links"]["web"]["href"]).or_else(|| text(&run["url"])),
        result: text(&run["result"]),
        ..BuildDetails::default()
    };
    let signals = BuildSignals {
        azure_project_id: text(&body["resourceContainers"]["project"]["id"]),
        ..BuildSignals::default()
    };
    Delivery::Build(Box::new(BuildSubmission {
        source: BuildSource::AzureDevOps,
        source_key: format!("{collection}/{build_id}"),
        details,
        signals,
        release: None,
        results: None,
        filter_branch: None,
    }))
}

/// A build's name: its pipeline's and its own. Azure DevOps allows longer names than Lathe stores, so the
/// combination is cut to the longest name Lathe stores (each part is checked by `azure_fields`).
fn build_name(pipeline: Option<String>, number: String) -> String {
    let name = match pipeline {
        Some(pipeline) => format!("{pipeline} {number}"),
        None => number,
    };
    match name.char_indices().nth(domain::MAX_NAME_CHARS) {
        Some((end, _)) => {
            let mut cut: String = name[..end]
                .chars()
                .take(domain::MAX_NAME_CHARS - 1)
                .collect();
            cut.push('…');
            cut
        }
        None => name,
    }
}

/// The namespace in which the build id is unique: the organization (or on-premises collection) from its URL,
/// else the collection's id.
fn collection(body: &Value, resource: &Value) -> Option<String> {
    let containers = &body["resourceContainers"];
    [
        &containers["collection"]["baseUrl"],
        &containers["account"]["baseUrl"],
        &resource["url"],
        &resource["_links"]["web"]["href"],
    ]
    .into_iter()
    .filter_map(text)
    .find_map(|url| collection_key(&url))
    .or_else(|| text(&containers["collection"]["id"]).map(|id| id.to_lowercase()))
    .or_else(|| text(&containers["account"]["id"]).map(|id| id.to_lowercase()))
}

/// The web URLs of the build's Azure DevOps project: `{organization URL}/{project name}`.
fn project_urls(body: &Value, resource: &Value, project_name: Option<&str>) -> Vec<String> {
    let Some(project_name) = project_name else {
        return Vec::new();
    };
    let containers = &body["resourceContainers"];
    [
        &containers["project"]["baseUrl"],
        &containers["collection"]["baseUrl"],
        &containers["account"]["baseUrl"],
    ]
    .into_iter()
    .filter_map(text)
    .chain(collection(body, resource).map(|key| format!("https://{key}")))
    .map(|base| format!("{}/{project_name}", base.trim_end_matches('/')))
    .collect()
}

/// A pull request, from `triggerInfo["pr.number"]` (a string) or a `refs/pull/{N}/merge` branch.
fn pull_request(resource: &Value, branch: Option<&str>) -> Option<PullRequestRef> {
    let trigger = &resource["triggerInfo"];
    // Numbers out of range were refused by `azure_fields::check`; they are never read as pull requests.
    let number = |n: &str| crate::input::pull_request_number(n).ok().flatten();
    let from_trigger = text(&trigger["pr.number"]).and_then(|n| number(&n));
    let from_branch = branch
        .and_then(|b| b.strip_prefix("refs/pull/"))
        .and_then(|rest| rest.split('/').next())
        .and_then(number);
    let number = from_trigger.or(from_branch)?;
    Some(PullRequestRef {
        number,
        repository_id: text(&trigger["pr.triggerRepository"])
            .or_else(|| text(&resource["repository"]["id"])),
    })
}

/// `LG:refs/heads/master:600c52d…` → (`refs/heads/master`, `600c52d…`).
fn split_source_get_version(version: &str) -> (Option<String>, Option<String>) {
    let rest = version.strip_prefix("LG:").unwrap_or(version);
    match rest.rsplit_once(':') {
        Some((branch, sha)) => (non_empty(branch), non_empty(sha)),
        None => (non_empty(rest), None),
    }
}

fn non_empty(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

fn text(value: &Value) -> Option<String> {
    value.as_str().and_then(non_empty)
}

fn number_or_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_legacy_source_version_holds_branch_and_commit() {
        assert_eq!(
            split_source_get_version(
                "LG:refs/heads/master:600c52d2d5b655caa111abfd863e5a9bd304bb0e"
            ),
            (
                Some("refs/heads/master".to_owned()),
                Some("600c52d2d5b655caa111abfd863e5a9bd304bb0e".to_owned())
            )
        );
    }

    #[test]
    fn a_pull_request_is_read_from_trigger_info_or_the_merge_branch() {
        let resource = json!({ "reason": "pullRequest", "triggerInfo": { "pr.number": "135209",
            "pr.triggerRepository": "repo-guid" } });
        assert_eq!(
            pull_request(&resource, Some("refs/pull/135209/merge")),
            Some(PullRequestRef {
                number: 135209,
                repository_id: Some("repo-guid".to_owned())
            })
        );
        let resource = json!({ "repository": { "id": "r" } });
        assert_eq!(
            pull_request(&resource, Some("refs/pull/7/merge")),
            Some(PullRequestRef {
                number: 7,
                repository_id: Some("r".to_owned())
            })
        );
        assert_eq!(pull_request(&json!({}), Some("refs/heads/main")), None);
    }

    #[test]
    fn the_pruned_parse_reads_every_fixture_as_the_full_parse_does() {
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/azure-devops"
        );
        let mut read = 0;
        for entry in std::fs::read_dir(fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let full: Value = serde_json::from_slice(&body).unwrap();
            let pruned = parse(&body).unwrap();
            let outcome = |value: &Value| format!("{:?}", interpret(value, &meta(value)));
            assert_eq!(outcome(&pruned), outcome(&full), "{}", path.display());
            assert!(pruned.to_string().len() < full.to_string().len());
            read += 1;
        }
        assert!(read >= 5, "fixtures read: {read}");
    }

    #[test]
    fn build_complete_and_run_state_changed_of_one_run_share_an_identity() {
        let containers =
            json!({ "collection": { "id": "c", "baseUrl": "https://dev.azure.com/Fabrikam/" } });
        let complete = json!({ "eventType": BUILD_COMPLETE, "resourceContainers": containers,
            "resource": { "id": 42, "buildNumber": "1" } });
        let run = json!({ "eventType": RUN_STATE_CHANGED, "resourceContainers": containers,
            "resource": { "run": { "id": 42, "state": "completed" } } });
        let key = |body: &Value| match interpret(body, &meta(body)).unwrap() {
            Delivery::Build(submission) => submission.source_key,
            Delivery::Ignore(why) => panic!("ignored: {why}"),
        };
        assert_eq!(key(&complete), "dev.azure.com/fabrikam/42");
        assert_eq!(key(&complete), key(&run));
    }
}

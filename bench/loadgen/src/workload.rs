//! What each request carries: the path and body of request number `i` of a run.
//!
//! Bodies are built once, before the clock starts, so that the load generator spends its share of the machine's
//! two cores on sending requests, not on serializing JSON. A webhook delivery differs from the next one only in
//! `resource.id`, so its body is kept as the bytes before and after that number.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

/// A number no real payload contains, put where `resource.id` goes to find its place in the serialized body.
const ID_MARK: u64 = 987_654_321_012_345;

/// The requests of one run.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Azure DevOps `build.complete` deliveries, each with its own `resource.id` (`first_id + i`), so that each
    /// one is a distinct build.
    Webhook {
        /// The body up to the build id.
        before: Vec<u8>,
        /// The body after the build id.
        after: Vec<u8>,
        first_id: u64,
    },
    /// One body sent again and again to a path, e.g. an ingest call (each without identity fields makes a new
    /// build) or a GraphQL query.
    Fixed {
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
        content_type: &'static str,
    },
}

impl Workload {
    /// Deliveries of the webhook payload in `template` (a JSON file), numbered from `first_id`.
    pub fn webhook(template: &str, first_id: u64) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(template).with_context(|| format!("reading {template}"))?;
        let mut payload: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {template}"))?;
        if !payload["resource"].is_object() {
            bail!("{template} has no `resource` object");
        }
        payload["resource"]["id"] = json!(ID_MARK);
        let body = serde_json::to_vec(&payload)?;
        let mark = ID_MARK.to_string();
        let at = find(&body, mark.as_bytes())
            .context("the id mark is missing from the serialized body")?;
        Ok(Self::Webhook {
            before: body[..at].to_vec(),
            after: body[at + mark.len()..].to_vec(),
            first_id,
        })
    }

    /// Results-ingest calls of `results` test results each (a tenth failed, a twentieth skipped).
    pub fn ingest(results: usize) -> Self {
        let test_results: Vec<Value> = (0..results)
            .map(|n| {
                let status = match n % 20 {
                    0 => "skipped",
                    1 | 2 => "failed",
                    _ => "passed",
                };
                json!({
                    "title": format!("suite {}/test case number {n}", n / 100),
                    "status": status,
                    "duration_ms": (n * 7) % 3000,
                    "error_message": if status == "failed" { json!("expected 200, got 500") } else { Value::Null },
                })
            })
            .collect();
        let body = json!({
            "build_name": "Bench nightly",
            "branch": "main",
            "commit_sha": "6e12f6141917f66a2964af55952ee33914d2d91f",
            "test_results": test_results,
        });
        Self::Fixed {
            method: Method::POST,
            path: "/api/v1/results/ingest".to_owned(),
            body: Some(serde_json::to_vec(&body).expect("a JSON value serializes")),
            content_type: "application/json",
        }
    }

    /// Results-ingest calls of one JUnit XML file of `results` test cases each, the build's fields in the query
    /// (the same build fields and the same mix of statuses and messages as [`Workload::ingest`]; failures carry a
    /// short stack trace, as real reports do).
    pub fn junit(results: usize) -> Self {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bench\">\n",
        );
        for suite in 0..results.div_ceil(100) {
            xml.push_str(&format!(
                "  <testsuite name=\"suite {suite}\" hostname=\"bench-agent\" tests=\"100\">\n"
            ));
            for n in suite * 100..results.min(suite * 100 + 100) {
                let time = format!("{:.3}", ((n * 7) % 3000) as f64 / 1000.0);
                xml.push_str(&format!(
                    "    <testcase classname=\"suite {suite}\" name=\"test case number {n}\" time=\"{time}\""
                ));
                match n % 20 {
                    0 => xml.push_str("><skipped message=\"not on this platform\"/></testcase>\n"),
                    1 | 2 => xml.push_str(
                        "><failure message=\"expected 200, got 500\" type=\"AssertionError\">AssertionError: \
                         expected 200, got 500\n    at Suite.test (suite.js:42:7)</failure></testcase>\n",
                    ),
                    _ => xml.push_str("/>\n"),
                }
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        Self::Fixed {
            method: Method::POST,
            path: "/api/v1/results/ingest?build_name=Bench%20nightly&branch=main\
                   &commit_sha=6e12f6141917f66a2964af55952ee33914d2d91f"
                .to_owned(),
            body: Some(xml.into_bytes()),
            content_type: "application/xml",
        }
    }

    /// `POST /graphql` with one query.
    pub fn graphql(query: &str) -> Self {
        Self::Fixed {
            method: Method::POST,
            path: "/graphql".to_owned(),
            body: Some(
                serde_json::to_vec(&json!({ "query": query })).expect("a JSON value serializes"),
            ),
            content_type: "application/json",
        }
    }

    /// The type of the bodies sent.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "application/json",
            Self::Fixed { content_type, .. } => content_type,
        }
    }

    /// The method, path and body of request number `i`.
    pub fn request(&self, i: u64) -> (Method, &str, Option<Vec<u8>>) {
        match self {
            Self::Webhook {
                before,
                after,
                first_id,
            } => {
                let id = (first_id + i).to_string();
                let mut body = Vec::with_capacity(before.len() + id.len() + after.len());
                body.extend_from_slice(before);
                body.extend_from_slice(id.as_bytes());
                body.extend_from_slice(after);
                (Method::POST, "/api/webhooks/azure-devops", Some(body))
            }
            Self::Fixed {
                method, path, body, ..
            } => (method.clone(), path, body.clone()),
        }
    }

    /// Size of one request body in bytes (of the first, for webhooks).
    pub fn body_bytes(&self) -> usize {
        self.request(0).2.map_or(0, |body| body.len())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_webhook_delivery_has_its_own_build_id() {
        let dir = std::env::temp_dir().join(format!("loadgen-test-{}.json", std::process::id()));
        std::fs::write(
            &dir,
            r#"{"eventType":"build.complete","resource":{"id":1,"buildNumber":"x"}}"#,
        )
        .unwrap();
        let workload = Workload::webhook(dir.to_str().unwrap(), 100).unwrap();
        let (_, path, body) = workload.request(7);
        let value: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(path, "/api/webhooks/azure-devops");
        assert_eq!(value["resource"]["id"], json!(107));
        assert_eq!(value["resource"]["buildNumber"], json!("x"));
        std::fs::remove_file(dir).unwrap();
    }

    #[test]
    fn an_ingest_body_holds_the_asked_number_of_results() {
        let Workload::Fixed { body, .. } = Workload::ingest(1000) else {
            panic!()
        };
        let value: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(value["test_results"].as_array().unwrap().len(), 1000);
    }

    #[test]
    fn a_junit_body_holds_the_asked_number_of_test_cases() {
        let workload = Workload::junit(1000);
        let body = String::from_utf8(workload.request(0).2.unwrap()).unwrap();
        assert_eq!(body.matches("<testcase ").count(), 1000);
        assert_eq!(body.matches("<failure ").count(), 100);
        assert_eq!(workload.content_type(), "application/xml");
    }
}

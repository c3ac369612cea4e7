//! Matching a build to a project, per the spec: Azure DevOps ids where configured, then the project URL (exact),
//! the project name (partial), and the repository URL. A tie within the strongest tier that matches anything is
//! ambiguous: the build is queued for a person to choose, never guessed.

use uuid::Uuid;

use crate::urls::normalize_url;

/// What the matcher needs to know of a project.
#[derive(Debug, Clone, Default)]
pub struct ProjectCandidate {
    pub project_id: Uuid,
    pub name: String,
    pub url: Option<String>,
    pub repository_urls: Vec<String>,
    pub azure_project_id: Option<String>,
    pub azure_repository_ids: Vec<String>,
    /// The project's branch filters, compiled once per read of the organization's projects.
    pub branch_filters: crate::branches::BranchMatcher,
    /// An archived project still matches (so that its builds are not guessed into another project), but its
    /// builds are queued with the reason instead of joining its releases.
    pub archived: bool,
}

/// What a build tells about where it comes from. Every field is optional: payloads differ.
#[derive(Debug, Clone, Default)]
pub struct BuildSignals {
    pub azure_project_id: Option<String>,
    pub azure_repository_id: Option<String>,
    /// URLs of the build's project (e.g. `https://dev.azure.com/{org}/{project}`).
    pub project_urls: Vec<String>,
    pub project_name: Option<String>,
    pub repository_urls: Vec<String>,
    /// A Lathe project named by the caller (ingest `project`): an id, a URL or a name.
    pub requested_project: Option<String>,
}

/// The matcher's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectMatch {
    Matched {
        project_id: Uuid,
        by: MatchedBy,
    },
    Ambiguous {
        by: MatchedBy,
        candidates: Vec<Uuid>,
    },
    NoMatch,
}

/// Which rule matched, for the delivery log and the response message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    RequestedProject,
    AzureRepositoryId,
    AzureProjectId,
    ProjectUrl,
    ProjectName,
    RepositoryUrl,
}

impl MatchedBy {
    /// A short description, e.g. `project URL`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::RequestedProject => "the project named in the request",
            Self::AzureRepositoryId => "Azure DevOps repository id",
            Self::AzureProjectId => "Azure DevOps project id",
            Self::ProjectUrl => "project URL",
            Self::ProjectName => "project name",
            Self::RepositoryUrl => "repository URL",
        }
    }
}

/// One matching rule: whether a project matches the build.
type Rule<'a> = dyn Fn(&ProjectCandidate) -> bool + 'a;

/// Finds the project a build belongs to among an organization's projects.
pub fn match_project(projects: &[ProjectCandidate], build: &BuildSignals) -> ProjectMatch {
    if let Some(requested) = build.requested_project.as_deref() {
        return match_requested(projects, requested.trim());
    }
    let project_urls: Vec<String> = build
        .project_urls
        .iter()
        .filter_map(|u| normalize_url(u))
        .collect();
    let repository_urls: Vec<String> = build
        .repository_urls
        .iter()
        .filter_map(|u| normalize_url(u))
        .collect();
    let build_name = build.project_name.as_deref().map(str::to_lowercase);
    let tiers: [(MatchedBy, &Rule); 5] = [
        (MatchedBy::AzureRepositoryId, &|p| {
            build.azure_repository_id.as_deref().is_some_and(|id| {
                p.azure_repository_ids
                    .iter()
                    .any(|own| own.eq_ignore_ascii_case(id))
            })
        }),
        (MatchedBy::AzureProjectId, &|p| match (
            build.azure_project_id.as_deref(),
            p.azure_project_id.as_deref(),
        ) {
            (Some(id), Some(own)) => own.eq_ignore_ascii_case(id),
            _ => false,
        }),
        (MatchedBy::ProjectUrl, &|p| {
            p.url
                .as_deref()
                .and_then(normalize_url)
                .is_some_and(|own| project_urls.contains(&own))
        }),
        (MatchedBy::ProjectName, &|p| {
            build_name.as_deref().is_some_and(|name| {
                let own = p.name.to_lowercase();
                !own.is_empty() && (name.contains(&own) || own.contains(name))
            })
        }),
        (MatchedBy::RepositoryUrl, &|p| {
            p.repository_urls
                .iter()
                .filter_map(|u| normalize_url(u))
                .any(|own| repository_urls.contains(&own))
        }),
    ];
    for (by, matches) in tiers {
        let found: Vec<Uuid> = projects
            .iter()
            .filter(|p| matches(p))
            .map(|p| p.project_id)
            .collect();
        match found.as_slice() {
            [] => continue,
            [one] => {
                return ProjectMatch::Matched {
                    project_id: *one,
                    by,
                }
            }
            _ => {
                return ProjectMatch::Ambiguous {
                    by,
                    candidates: found,
                }
            }
        }
    }
    ProjectMatch::NoMatch
}

/// A project the caller named: by id, then URL, then exact name, then partial name.
fn match_requested(projects: &[ProjectCandidate], requested: &str) -> ProjectMatch {
    let by = MatchedBy::RequestedProject;
    let verdict = |found: Vec<Uuid>| match found.as_slice() {
        [] => None,
        [one] => Some(ProjectMatch::Matched {
            project_id: *one,
            by,
        }),
        _ => Some(ProjectMatch::Ambiguous {
            by,
            candidates: found,
        }),
    };
    if let Ok(id) = requested.parse::<Uuid>() {
        return verdict(
            projects
                .iter()
                .filter(|p| p.project_id == id)
                .map(|p| p.project_id)
                .collect(),
        )
        .unwrap_or(ProjectMatch::NoMatch);
    }
    if let Some(url) = normalize_url(requested) {
        let found = projects
            .iter()
            .filter(|p| p.url.as_deref().and_then(normalize_url).as_ref() == Some(&url))
            .map(|p| p.project_id)
            .collect();
        return verdict(found).unwrap_or(ProjectMatch::NoMatch);
    }
    let wanted = requested.to_lowercase();
    let exact = projects
        .iter()
        .filter(|p| p.name.to_lowercase() == wanted)
        .map(|p| p.project_id)
        .collect();
    if let Some(found) = verdict(exact) {
        return found;
    }
    let partial = projects
        .iter()
        .filter(|p| p.name.to_lowercase().contains(&wanted))
        .map(|p| p.project_id)
        .collect();
    verdict(partial).unwrap_or(ProjectMatch::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(n: u128, name: &str) -> ProjectCandidate {
        ProjectCandidate {
            project_id: Uuid::from_u128(n),
            name: name.to_owned(),
            ..ProjectCandidate::default()
        }
    }

    #[test]
    fn the_project_url_matches_after_normalization() {
        let mut web = project(1, "Web");
        web.url = Some(
            "https://fabrikam.visualstudio.com/DefaultCollection/FabrikamFiberChat/".to_owned(),
        );
        let other = project(2, "Other");
        let build = BuildSignals {
            project_urls: vec!["https://dev.azure.com/FabrikamFiber/FabrikamFiberChat".to_owned()],
            ..BuildSignals::default()
        };
        assert_eq!(
            match_project(&[web.clone(), other.clone()], &build),
            ProjectMatch::NoMatch
        );
        web.url = Some(
            "https://fabrikamfiber.visualstudio.com/DefaultCollection/FabrikamFiberChat/"
                .to_owned(),
        );
        assert_eq!(
            match_project(&[web, other], &build),
            ProjectMatch::Matched {
                project_id: Uuid::from_u128(1),
                by: MatchedBy::ProjectUrl
            }
        );
    }

    #[test]
    fn ids_win_over_urls_and_names() {
        let mut by_id = project(1, "Something else");
        by_id.azure_project_id = Some("16DCFEEB-d8fd-495c-917b-fec46cb44fbb".to_owned());
        let mut by_url = project(2, "Chat");
        by_url.url = Some("https://dev.azure.com/fabrikamfiber/fabrikamfiberchat".to_owned());
        let build = BuildSignals {
            azure_project_id: Some("16dcfeeb-d8fd-495c-917b-fec46cb44fbb".to_owned()),
            project_urls: vec!["https://dev.azure.com/FabrikamFiber/FabrikamFiberChat".to_owned()],
            project_name: Some("FabrikamFiberChat".to_owned()),
            ..BuildSignals::default()
        };
        assert_eq!(
            match_project(&[by_id, by_url], &build),
            ProjectMatch::Matched {
                project_id: Uuid::from_u128(1),
                by: MatchedBy::AzureProjectId
            }
        );
    }

    #[test]
    fn a_partial_name_matches_and_two_partial_names_are_ambiguous() {
        let build = BuildSignals {
            project_name: Some("FabrikamFiberChat".to_owned()),
            ..BuildSignals::default()
        };
        assert_eq!(
            match_project(&[project(1, "fiberchat"), project(2, "Mobile")], &build),
            ProjectMatch::Matched {
                project_id: Uuid::from_u128(1),
                by: MatchedBy::ProjectName
            }
        );
        assert_eq!(
            match_project(&[project(1, "Fabrikam"), project(2, "Chat")], &build),
            ProjectMatch::Ambiguous {
                by: MatchedBy::ProjectName,
                candidates: vec![Uuid::from_u128(1), Uuid::from_u128(2)]
            }
        );
    }

    #[test]
    fn the_repository_url_matches_last() {
        let mut repo = project(1, "Runtime");
        repo.repository_urls = vec!["https://github.com/dotnet/runtime.git".to_owned()];
        let build = BuildSignals {
            repository_urls: vec!["https://github.com:443/dotnet/runtime".to_owned()],
            project_name: Some("public".to_owned()),
            ..BuildSignals::default()
        };
        assert_eq!(
            match_project(&[repo, project(2, "Docs")], &build),
            ProjectMatch::Matched {
                project_id: Uuid::from_u128(1),
                by: MatchedBy::RepositoryUrl
            }
        );
    }

    #[test]
    fn nothing_in_common_is_no_match() {
        let build = BuildSignals {
            project_name: Some("Alpha".to_owned()),
            ..BuildSignals::default()
        };
        assert_eq!(
            match_project(&[project(1, "Beta")], &build),
            ProjectMatch::NoMatch
        );
        assert_eq!(
            match_project(&[], &BuildSignals::default()),
            ProjectMatch::NoMatch
        );
    }

    #[test]
    fn a_requested_project_is_found_by_id_url_or_name() {
        let mut web = project(1, "Web");
        web.url = Some("https://dev.azure.com/fabrikam/web".to_owned());
        let projects = [web, project(2, "Web API"), project(3, "Mobile")];
        let ask = |requested: &str| {
            match_project(
                &projects,
                &BuildSignals {
                    requested_project: Some(requested.to_owned()),
                    ..BuildSignals::default()
                },
            )
        };
        let matched = |n| ProjectMatch::Matched {
            project_id: Uuid::from_u128(n),
            by: MatchedBy::RequestedProject,
        };
        assert_eq!(ask(&Uuid::from_u128(3).to_string()), matched(3));
        assert_eq!(ask("https://dev.azure.com/Fabrikam/Web/"), matched(1));
        assert_eq!(
            ask("web"),
            matched(1),
            "an exact name wins over partial ones"
        );
        assert_eq!(ask("mob"), matched(3));
        assert!(matches!(ask("we"), ProjectMatch::Ambiguous { .. }));
        assert_eq!(ask("desktop"), ProjectMatch::NoMatch);
    }
}

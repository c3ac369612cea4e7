//! Branch filters: which builds a project takes, by glob patterns on the branch name.

use serde::{Deserialize, Serialize};

/// A project's branch filters. An empty include list takes every branch; an exclude match always wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchFilters {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// Why a branch filter pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("`{0}`: a pattern must not be empty or contain spaces")]
    Blank(String),
    #[error(
        "`{0}`: only `*` (any characters, `/` included) and `?` (one character) are supported"
    )]
    Unsupported(String),
}

/// The rule that stopped a build, for the response and the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    Excluded { pattern: String },
    NotIncluded,
}

impl Filtered {
    /// A sentence naming the rule.
    pub fn describe(&self, branch: &str) -> String {
        match self {
            Self::Excluded { pattern } => {
                format!("branch `{branch}` matches the exclude pattern `{pattern}`")
            }
            Self::NotIncluded => {
                format!("branch `{branch}` matches none of the project's include patterns")
            }
        }
    }
}

impl BranchFilters {
    /// Trims the patterns, drops a leading `refs/heads/` and refuses what cannot be matched.
    pub fn validated(self) -> Result<Self, GlobError> {
        let clean = |patterns: Vec<String>| -> Result<Vec<String>, GlobError> {
            patterns
                .into_iter()
                .map(|pattern| {
                    let trimmed = pattern.trim();
                    let trimmed = trimmed.strip_prefix("refs/heads/").unwrap_or(trimmed);
                    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
                        return Err(GlobError::Blank(pattern));
                    }
                    if trimmed.contains(['[', ']', '{', '}', '\\', '!']) {
                        return Err(GlobError::Unsupported(pattern));
                    }
                    Ok(trimmed.to_owned())
                })
                .collect()
        };
        Ok(Self {
            include: clean(self.include)?,
            exclude: clean(self.exclude)?,
        })
    }

    /// Whether a build of `branch` (with or without `refs/heads/`) is taken; `Err` names the rule that stops it.
    pub fn check(&self, branch: &str) -> Result<(), Filtered> {
        let branch = short_branch(branch);
        if let Some(pattern) = self.exclude.iter().find(|p| glob_matches(p, branch)) {
            return Err(Filtered::Excluded {
                pattern: pattern.clone(),
            });
        }
        if self.include.is_empty() || self.include.iter().any(|p| glob_matches(p, branch)) {
            Ok(())
        } else {
            Err(Filtered::NotIncluded)
        }
    }

    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// `refs/heads/main` → `main`.
pub fn short_branch(branch: &str) -> &str {
    branch.strip_prefix("refs/heads/").unwrap_or(branch)
}

/// Matches `*` (any run of characters, `/` included) and `?` (one character); everything else literally.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Classic two-pointer wildcard matching with backtracking to the last star: linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(include: &[&str], exclude: &[&str]) -> BranchFilters {
        BranchFilters {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
        .validated()
        .unwrap()
    }

    #[test]
    fn the_spec_example_filters_as_a_user_expects() {
        let f = filters(
            &["main", "develop", "release/*"],
            &["dependabot/*", "draft/*"],
        );
        assert_eq!(f.check("refs/heads/main"), Ok(()));
        assert_eq!(f.check("release/2026.11"), Ok(()));
        assert_eq!(f.check("refs/heads/release/2026/hotfix"), Ok(()));
        assert_eq!(f.check("feature/login"), Err(Filtered::NotIncluded));
        assert_eq!(f.check("maintenance"), Err(Filtered::NotIncluded));
        assert_eq!(
            f.check("dependabot/npm_and_yarn/lodash-4.17.21"),
            Err(Filtered::Excluded {
                pattern: "dependabot/*".to_owned()
            })
        );
    }

    #[test]
    fn exclude_wins_and_an_empty_include_takes_everything() {
        let f = filters(&[], &["draft/*"]);
        assert_eq!(f.check("anything/at/all"), Ok(()));
        let f = filters(&["*"], &["release/*-rc?"]);
        assert_eq!(
            f.check("release/1.0-rc1"),
            Err(Filtered::Excluded {
                pattern: "release/*-rc?".to_owned()
            })
        );
        assert_eq!(f.check("release/1.0"), Ok(()));
    }

    #[test]
    fn patterns_we_cannot_match_are_refused() {
        for bad in ["", "  ", "feature/[a-z]*", "{main,develop}", "my branch"] {
            let result = BranchFilters {
                include: vec![bad.to_owned()],
                exclude: vec![],
            }
            .validated();
            assert!(result.is_err(), "{bad:?}");
        }
        assert_eq!(filters(&["refs/heads/main "], &[]).include, ["main"]);
    }
}

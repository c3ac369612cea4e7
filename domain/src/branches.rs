//! Branch filters: which builds a project takes, by glob patterns on the branch name.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Longest pattern a project may have, in characters.
pub const MAX_PATTERN_CHARS: usize = 256;
/// Most patterns a project may have, include and exclude together.
pub const MAX_PATTERNS: usize = 64;
/// Longest branch a build may name, in characters (with `refs/heads/`): Git hosts refuse far shorter ones, and the
/// bound keeps matching cheap whatever the patterns.
pub const MAX_BRANCH_CHARS: usize = 1_024;

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
    /// The pattern is quoted only by its start: it may be huge.
    #[error("`{start}…`: a pattern may have at most {max} characters", max = MAX_PATTERN_CHARS)]
    TooLong { start: String },
    #[error("{count} patterns: a project may have at most {max} (include and exclude together)", max = MAX_PATTERNS)]
    TooMany { count: usize },
}

/// Why a branch name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a branch may have at most {max} characters; this one has {chars}", max = MAX_BRANCH_CHARS)]
pub struct BranchTooLong {
    pub chars: usize,
}

/// Refuses a branch name longer than [`MAX_BRANCH_CHARS`].
pub fn check_branch_length(branch: &str) -> Result<(), BranchTooLong> {
    // Counting stops one past the limit: a huge branch costs no more than a long one.
    let chars = branch.chars().take(MAX_BRANCH_CHARS + 1).count();
    if chars > MAX_BRANCH_CHARS {
        Err(BranchTooLong {
            chars: branch.chars().count(),
        })
    } else {
        Ok(())
    }
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
    /// Trims the patterns, drops a leading `refs/heads/` and refuses what cannot be matched or is over the bounds.
    pub fn validated(self) -> Result<Self, GlobError> {
        let count = self.include.len() + self.exclude.len();
        if count > MAX_PATTERNS {
            return Err(GlobError::TooMany { count });
        }
        let clean = |patterns: Vec<String>| -> Result<Vec<String>, GlobError> {
            patterns
                .into_iter()
                .map(|pattern| {
                    let trimmed = pattern.trim();
                    let trimmed = trimmed.strip_prefix("refs/heads/").unwrap_or(trimmed);
                    if trimmed.chars().nth(MAX_PATTERN_CHARS).is_some() {
                        return Err(GlobError::TooLong {
                            start: trimmed.chars().take(40).collect(),
                        });
                    }
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

    /// The filters compiled for matching: compile once (e.g. when an organization's projects are read), match
    /// many times.
    pub fn compile(&self) -> BranchMatcher {
        let compile = |patterns: &[String]| patterns.iter().map(|p| Glob::new(p)).collect();
        BranchMatcher {
            include: compile(&self.include),
            exclude: compile(&self.exclude),
        }
    }

    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// A project's branch filters, compiled. Matching takes time linear in the branch's length whatever the patterns
/// (each glob is a regular expression, and the `regex` crate never backtracks).
#[derive(Debug, Clone, Default)]
pub struct BranchMatcher {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

impl BranchMatcher {
    /// Whether a build of `branch` (with or without `refs/heads/`) is taken; `Err` names the rule that stops it.
    pub fn check(&self, branch: &str) -> Result<(), Filtered> {
        let branch = short_branch(branch);
        if let Some(glob) = self.exclude.iter().find(|g| g.matches(branch)) {
            return Err(Filtered::Excluded {
                pattern: glob.pattern.clone(),
            });
        }
        if self.include.is_empty() || self.include.iter().any(|g| g.matches(branch)) {
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

/// One pattern and its compiled form.
#[derive(Debug, Clone)]
struct Glob {
    pattern: String,
    /// `None` only if the expression is over the `regex` crate's size limit, which no pattern within
    /// [`MAX_PATTERN_CHARS`] reaches; such a pattern then matches only itself.
    regex: Option<Regex>,
}

impl Glob {
    fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_owned(),
            regex: Regex::new(&glob_to_regex(pattern)).ok(),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match &self.regex {
            Some(regex) => regex.is_match(text),
            None => self.pattern == text,
        }
    }
}

/// `release/*-rc?` → `\A(?s:release/.*\-rc.)\z`: `*` any run of characters (`/` and newlines included), `?` exactly
/// one, everything else literally; anchored at both ends.
fn glob_to_regex(pattern: &str) -> String {
    let mut regex = String::with_capacity(pattern.len() + 16);
    regex.push_str("\\A(?s:");
    let mut literal = [0_u8; 4];
    for c in pattern.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            other => regex.push_str(&regex::escape(other.encode_utf8(&mut literal))),
        }
    }
    regex.push_str(")\\z");
    regex
}

/// `refs/heads/main` → `main`.
pub fn short_branch(branch: &str) -> &str {
    branch.strip_prefix("refs/heads/").unwrap_or(branch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(include: &[&str], exclude: &[&str]) -> BranchFilters {
        BranchFilters {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
        .validated()
        .unwrap()
    }

    fn filters(include: &[&str], exclude: &[&str]) -> BranchMatcher {
        validated(include, exclude).compile()
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
        assert_eq!(validated(&["refs/heads/main "], &[]).include, ["main"]);
    }

    #[test]
    fn globs_match_whole_branches_with_every_other_character_literal() {
        let f = filters(&["feat.*", "v?.(1)+", "a|b", "^x$"], &[]);
        assert_eq!(f.check("feat.login/step"), Ok(()));
        assert_eq!(f.check("featXlogin"), Err(Filtered::NotIncluded));
        assert_eq!(f.check("v1.(1)+"), Ok(()));
        assert_eq!(f.check("v1.(11)+"), Err(Filtered::NotIncluded));
        assert_eq!(f.check("a|b"), Ok(()));
        assert_eq!(f.check("a"), Err(Filtered::NotIncluded));
        assert_eq!(f.check("^x$"), Ok(()));
        // Anchored: a pattern matches the whole branch, not a part of it.
        assert_eq!(
            filters(&["main"], &[]).check("main-old"),
            Err(Filtered::NotIncluded)
        );
        // `*` crosses `/` and newlines; `?` is one character, not one byte.
        assert_eq!(filters(&["a*b"], &[]).check("a/x\ny/b"), Ok(()));
        assert_eq!(filters(&["r?"], &[]).check("ré"), Ok(()));
        assert_eq!(filters(&["r?"], &[]).check("r"), Err(Filtered::NotIncluded));
        assert_eq!(filters(&["**"], &[]).check(""), Ok(()));
    }

    #[test]
    fn a_hostile_pattern_against_a_long_branch_is_matched_at_once() {
        // The old backtracking matcher took seconds on this (quadratic: pattern length × branch length).
        let pattern = format!("{}b", "*a".repeat(MAX_PATTERN_CHARS / 2 - 1));
        let f = filters(&[&pattern], &[]);
        let branch = "a".repeat(MAX_BRANCH_CHARS);
        assert_eq!(f.check(&branch), Err(Filtered::NotIncluded));
        let branch = "a".repeat(1_000_000);
        assert_eq!(f.check(&branch), Err(Filtered::NotIncluded));
    }

    #[test]
    fn patterns_and_branches_over_the_bounds_are_refused() {
        let long = "a".repeat(MAX_PATTERN_CHARS + 1);
        let result = BranchFilters {
            include: vec![long],
            exclude: vec![],
        }
        .validated();
        assert!(matches!(result, Err(GlobError::TooLong { start }) if start.len() == 40));
        let at_limit = "a".repeat(MAX_PATTERN_CHARS);
        assert!(BranchFilters {
            include: vec![format!("refs/heads/{at_limit}")],
            exclude: vec![],
        }
        .validated()
        .is_ok());
        let many = BranchFilters {
            include: vec!["a".to_owned(); MAX_PATTERNS],
            exclude: vec!["b".to_owned()],
        }
        .validated();
        assert_eq!(
            many,
            Err(GlobError::TooMany {
                count: MAX_PATTERNS + 1
            })
        );
        assert_eq!(check_branch_length(&"b".repeat(MAX_BRANCH_CHARS)), Ok(()));
        assert_eq!(
            check_branch_length(&"b".repeat(MAX_BRANCH_CHARS + 5)),
            Err(BranchTooLong {
                chars: MAX_BRANCH_CHARS + 5
            })
        );
    }
}

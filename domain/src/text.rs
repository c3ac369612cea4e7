//! Validation shared by every aggregate that takes a human-given name.

/// Longest name Lathe accepts for an organization, project, release, key or build.
pub const MAX_NAME_CHARS: usize = 200;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
}

/// Trims a name and checks it is neither blank nor longer than [`MAX_NAME_CHARS`].
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Web  "), Ok("Web".to_owned()));
        assert_eq!(validate_name("   "), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(201)), Err(NameError::TooLong));
        assert!(validate_name(&"é".repeat(200)).is_ok());
    }
}

//! Validation shared by every aggregate that takes a human-given name.

/// Longest name Lathe accepts for an organization, project, release, key or build.
pub const MAX_NAME_CHARS: usize = 200;

/// Longest test title: parameterised test names are long, so they get more room than other names.
pub const MAX_TEST_TITLE_CHARS: usize = 2_000;

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

/// Removes NUL characters (which PostgreSQL cannot store in text) and cuts `value` at `max_chars` characters,
/// ending it with a note of how many were cut. Borrowed when nothing changes, which is nearly always.
pub fn clean_text(value: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    let cut_at = value.char_indices().nth(max_chars).map(|(at, _)| at);
    if cut_at.is_none() && !value.contains('\0') {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut cleaned = value[..cut_at.unwrap_or(value.len())].replace('\0', "");
    if let Some(at) = cut_at {
        let cut = value[at..].chars().count();
        cleaned.push_str(&format!("\n[… {cut} more characters cut by Lathe]"));
    }
    std::borrow::Cow::Owned(cleaned)
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

    #[test]
    fn cleaned_text_has_no_nul_and_says_what_was_cut() {
        assert!(matches!(
            clean_text("plain", 5),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(clean_text("a\0b\0", 10), "ab");
        let long = format!("{}\0{}", "x".repeat(10), "y".repeat(5));
        assert_eq!(
            clean_text(&long, 12),
            "xxxxxxxxxxy\n[… 4 more characters cut by Lathe]"
        );
    }
}

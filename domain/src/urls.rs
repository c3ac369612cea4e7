//! URL normalization for matching builds to projects: two spellings of one Azure DevOps or Git URL compare equal.

use url::Url;

/// Normalizes a project or repository URL for comparison, or `None` when it is not an http(s) URL.
///
/// Scheme, user info, query, fragment, default ports, trailing slashes, a `.git` suffix and a `DefaultCollection`
/// segment are dropped; `{org}.visualstudio.com` becomes `dev.azure.com/{org}`; and the result is lowercased,
/// because Azure DevOps organization, project and repository names, and GitHub owners and repositories, are
/// case-insensitive. `https://github.com:443/X/y.git/` and `http://github.com/x/Y` both become `github.com/x/y`.
pub fn normalize_url(raw: &str) -> Option<String> {
    let url = Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let mut segments: Vec<String> = url
        .path_segments()
        .map(|segments| {
            segments
                .filter(|segment| !segment.is_empty())
                .map(|segment| segment.to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let host = match host.strip_suffix(".visualstudio.com") {
        Some(org) => {
            segments.insert(0, org.to_owned());
            "dev.azure.com".to_owned()
        }
        None => host,
    };
    // `DefaultCollection` is the implicit collection of Azure DevOps Services: with or without it is one URL.
    let collection_at = usize::from(host == "dev.azure.com");
    if segments.get(collection_at).map(String::as_str) == Some("defaultcollection") {
        segments.remove(collection_at);
    }
    if let Some(last) = segments.last_mut() {
        if let Some(stripped) = last.strip_suffix(".git") {
            *last = stripped.to_owned();
        }
    }
    // A port other than the scheme's default stays: it names another server.
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let mut normalized = authority;
    for segment in segments {
        normalized.push('/');
        normalized.push_str(&segment);
    }
    Some(normalized)
}

/// The Azure DevOps organization (or on-premises collection) a URL belongs to, as `dev.azure.com/{org}` or
/// `{host}/{collection}`: the namespace in which build ids are unique.
pub fn collection_key(raw: &str) -> Option<String> {
    let normalized = normalize_url(raw)?;
    let mut parts = normalized.split('/');
    let host = parts.next()?;
    let first = parts.next();
    match (host, first) {
        (_, Some("tfs")) => Some(format!("{host}/tfs/{}", parts.next()?)),
        (_, Some(first)) => Some(format!("{host}/{first}")),
        (_, None) => Some(host.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        assert_eq!(normalize_url(a), normalize_url(b), "{a} vs {b}");
        assert!(normalize_url(a).is_some(), "{a}");
    }

    #[test]
    fn spellings_of_one_url_compare_equal() {
        same(
            "https://github.com:443/dotnet/runtime",
            "https://github.com/dotnet/runtime",
        );
        same(
            "HTTPS://GitHub.com/dotnet/runtime/",
            "https://github.com/dotnet/runtime",
        );
        same(
            "https://github.com/dotnet/runtime.git",
            "https://github.com/dotnet/runtime",
        );
        same(
            "http://github.com/dotnet/runtime",
            "https://github.com/dotnet/runtime",
        );
        same(
            "https://fabrikam.visualstudio.com/DefaultCollection/Web/_git/Web",
            "https://dev.azure.com/fabrikam/Web/_git/Web",
        );
        same(
            "https://dev.azure.com/fabrikam/DefaultCollection/Web/",
            "https://dev.azure.com/Fabrikam/web",
        );
        same(
            "https://fabrikam@dev.azure.com/fabrikam/Web/_git/Web?path=/x#frag",
            "https://dev.azure.com/fabrikam/Web/_git/Web",
        );
    }

    #[test]
    fn different_urls_stay_different() {
        assert_ne!(
            normalize_url("https://github.com/dotnet/runtime"),
            normalize_url("https://github.com/dotnet/runtime-lab")
        );
        assert_ne!(
            normalize_url("https://git.example.com:8443/x"),
            normalize_url("https://git.example.com/x")
        );
        assert_eq!(normalize_url("git@github.com:dotnet/runtime.git"), None);
        assert_eq!(normalize_url("ftp://example.com/x"), None);
    }

    #[test]
    fn the_collection_of_a_url_is_its_organization() {
        assert_eq!(
            collection_key("https://dev.azure.com/FabrikamFiber/").as_deref(),
            Some("dev.azure.com/fabrikamfiber")
        );
        assert_eq!(
            collection_key("https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection/_apis/x")
                .as_deref(),
            Some("dev.azure.com/fabrikam-fiber-inc")
        );
        assert_eq!(
            collection_key("https://dev.azure.com/fabrikam-fiber-inc/DefaultCollection/71777fbc/_apis/build/Builds/2")
                .as_deref(),
            Some("dev.azure.com/fabrikam-fiber-inc")
        );
        assert_eq!(
            collection_key("https://tfs.contoso.com/tfs/Main/Web/_build").as_deref(),
            Some("tfs.contoso.com/tfs/main")
        );
    }
}

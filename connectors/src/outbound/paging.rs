//! Pages: the next page a provider's `Link` header names, and the check that keeps a page
//! cursor taken from it under the integration's own API root.

use reqwest::header::HeaderMap;

use crate::error::Error;

/// The `rel="next"` target of a `Link` header (RFC 8288), as GitHub, GitLab and the OCI
/// distribution API send it.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return target
                    .strip_prefix('<')
                    .and_then(|t| t.strip_suffix('>'))
                    .map(str::to_owned);
            }
        }
    }
    None
}

/// A pagination cursor that is a provider URL (taken from a `Link` header), accepted only
/// under the integration's own API root, so a caller cannot aim the connector elsewhere.
///
/// # Errors
/// [`Error::InvalidCursor`].
pub fn check_cursor_url(base: &str, cursor: &str) -> Result<String, Error> {
    let prefix = format!("{}/", base.trim_end_matches('/'));
    if cursor.starts_with(&prefix) && !cursor.contains(|c: char| c.is_whitespace() || c == '#') {
        Ok(cursor.to_owned())
    } else {
        Err(Error::InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::tests::headers;

    #[test]
    fn cursors_must_stay_under_the_api_root() {
        let base = "https://gitlab.example.com/api/v4";
        assert!(
            check_cursor_url(base, "https://gitlab.example.com/api/v4/projects?page=2").is_ok()
        );
        for bad in [
            "https://gitlab.example.com.evil.com/api/v4/projects",
            "https://gitlab.example.com/api/v40/x",
            "http://gitlab.example.com/api/v4/projects",
            "https://gitlab.example.com/api/v4/projects#frag",
        ] {
            assert!(
                matches!(check_cursor_url(base, bad), Err(Error::InvalidCursor)),
                "{bad}"
            );
        }
    }

    #[test]
    fn link_next_finds_the_next_relation() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/installation/repositories?page=2>; rel="next", <https://api.github.com/installation/repositories?page=5>; rel="last""#,
        )]);
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://api.github.com/installation/repositories?page=2")
        );
        let oci = headers(&[("link", r#"</v2/_catalog?last=b&n=2>; rel="next""#)]);
        assert_eq!(link_next(&oci).as_deref(), Some("/v2/_catalog?last=b&n=2"));
        let last_only = headers(&[("link", r#"<https://x/?page=1>; rel="prev""#)]);
        assert_eq!(link_next(&last_only), None);
    }
}

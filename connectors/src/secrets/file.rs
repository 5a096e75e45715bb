//! The `file` backend: a file under `secrets_dir`, read at use time.
//!
//! A tenant's reference is read only from inside its folder (`folder`, relative to
//! `secrets_dir`): the path is compared segment by segment by the namespace, and here the
//! canonical path, symlinks followed, must still be inside the canonical folder. A sidecar
//! `<file>.meta.json` may carry `{"allowed_hosts": ["gitlab.example.com"]}` (a list or a
//! comma-separated string), the hosts the secret may be sent to.

use std::path::{Component, Path, PathBuf};

use super::binding::{ALLOWED_HOSTS_KEY, Binding};
use super::{Secret, SecretError, from_text};
use crate::authref::AuthRef;

/// The suffix of a file secret's metadata sidecar.
pub const SIDECAR_SUFFIX: &str = ".meta.json";

/// The file of a `file` reference, refused if it would leave the secrets folder.
fn file_path(dir: &Path, reference: &AuthRef) -> Result<PathBuf, SecretError> {
    let relative = Path::new(&reference.path);
    // AuthRef parsing already refuses `..` and empty segments; this is the second lock.
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(SecretError::NotFound {
            reference: reference.to_string(),
        });
    }
    Ok(dir.join(relative))
}

/// Reads `reference` from `dir`, staying inside `dir/<folder>` (the tenant's folder; empty
/// for the operator's own references).
pub(super) async fn resolve(
    dir: Option<&Path>,
    folder: &[String],
    reference: &AuthRef,
) -> Result<(Secret, Binding), SecretError> {
    let dir = dir.ok_or(SecretError::NotConfigured {
        backend: "file",
        what: "no secrets_dir",
    })?;
    let path = file_path(dir, reference)?;
    let not_found = || SecretError::NotFound {
        reference: reference.to_string(),
    };
    let canonical_dir =
        tokio::fs::canonicalize(dir)
            .await
            .map_err(|_| SecretError::Unavailable {
                reference: reference.to_string(),
                detail: "the secrets folder is not readable".into(),
            })?;
    // A tenant without a folder yet has no secrets: not found, like a missing file.
    let root = tokio::fs::canonicalize(folder.iter().fold(dir.to_owned(), |p, s| p.join(s)))
        .await
        .map_err(|_| not_found())?;
    // Symlinks could point outside the folder: compare canonical paths.
    let canonical = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| not_found())?;
    if !root.starts_with(&canonical_dir) || !canonical.starts_with(&root) {
        return Err(not_found());
    }
    let text =
        tokio::fs::read_to_string(&canonical)
            .await
            .map_err(|e| SecretError::Unavailable {
                reference: reference.to_string(),
                detail: format!("cannot read the file: {}", e.kind()),
            })?;
    let secret = from_text(reference, text)?;
    let binding = sidecar(&path, &root, reference).await?;
    Ok((secret, binding))
}

/// The binding in `<path>.meta.json`, if there is one.
async fn sidecar(path: &Path, root: &Path, reference: &AuthRef) -> Result<Binding, SecretError> {
    let mut name = path.as_os_str().to_owned();
    name.push(SIDECAR_SUFFIX);
    let malformed = |detail: &str| SecretError::Malformed {
        reference: reference.to_string(),
        detail: format!("{SIDECAR_SUFFIX} sidecar: {detail}"),
    };
    let canonical = match tokio::fs::canonicalize(PathBuf::from(name)).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Binding::unbound()),
        Err(_) => return Err(malformed("not readable")),
    };
    if !canonical.starts_with(root) {
        return Err(malformed("outside the folder"));
    }
    let text = tokio::fs::read_to_string(&canonical)
        .await
        .map_err(|_| malformed("not readable"))?;
    let meta: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|_| malformed("not a JSON object"))?;
    let list = match meta.get(ALLOWED_HOSTS_KEY) {
        None => return Ok(Binding::unbound()),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("allowed_hosts holds a value that is not text"))?
            .join(","),
        Some(_) => return Err(malformed("allowed_hosts is not a list")),
    };
    Binding::parse(&list).ok_or_else(|| malformed("allowed_hosts does not parse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> AuthRef {
        s.parse().unwrap()
    }

    fn folder(tenant: &str) -> Vec<String> {
        vec!["tenants".into(), tenant.into()]
    }

    #[tokio::test]
    async fn stays_inside_the_tenants_folder() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let acme = dir.path().join("tenants/acme");
        let beta = dir.path().join("tenants/beta");
        std::fs::create_dir_all(acme.join("ci")).unwrap();
        std::fs::create_dir_all(&beta).unwrap();
        std::fs::write(acme.join("ci/gitlab"), "glpat-abc\n").unwrap();
        std::fs::write(beta.join("token"), "beta-secret").unwrap();
        std::fs::write(outside.path().join("shadow"), "nope").unwrap();
        std::os::unix::fs::symlink(outside.path().join("shadow"), acme.join("link")).unwrap();
        // A link that stays under secrets_dir but leaves the tenant's folder.
        std::os::unix::fs::symlink(beta.join("token"), acme.join("to-beta")).unwrap();
        std::os::unix::fs::symlink(&beta, acme.join("beta-dir")).unwrap();
        std::os::unix::fs::symlink(acme.join("ci/gitlab"), acme.join("inside")).unwrap();
        let (secret, binding) = resolve(
            Some(dir.path()),
            &folder("acme"),
            &r("authref://file/tenants/acme/ci/gitlab"),
        )
        .await
        .unwrap();
        assert_eq!(secret.expose(), "glpat-abc");
        assert!(!binding.is_bound());
        let inside = resolve(
            Some(dir.path()),
            &folder("acme"),
            &r("authref://file/tenants/acme/inside"),
        )
        .await
        .unwrap();
        assert_eq!(inside.0.expose(), "glpat-abc");
        for missing in [
            "authref://file/tenants/acme/ci/none",
            "authref://file/tenants/acme/link",
            "authref://file/tenants/acme/to-beta",
            "authref://file/tenants/acme/beta-dir/token",
        ] {
            let e = resolve(Some(dir.path()), &folder("acme"), &r(missing))
                .await
                .unwrap_err();
            assert!(matches!(e, SecretError::NotFound { .. }), "{missing}: {e}");
        }
        // A tenant with no folder has no secrets.
        let e = resolve(
            Some(dir.path()),
            &folder("gamma"),
            &r("authref://file/tenants/gamma/x"),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, SecretError::NotFound { .. }), "{e}");
        let off = resolve(
            None,
            &folder("acme"),
            &r("authref://file/tenants/acme/ci/gitlab"),
        )
        .await
        .unwrap_err();
        assert!(matches!(off, SecretError::NotConfigured { .. }));
    }

    #[tokio::test]
    async fn a_sidecar_binds_the_secret_to_its_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let acme = dir.path().join("tenants/acme");
        std::fs::create_dir_all(&acme).unwrap();
        for (name, sidecar) in [
            (
                "list",
                r#"{"allowed_hosts": ["gitlab.example.com", "*.corp.example"]}"#,
            ),
            (
                "text",
                r#"{"allowed_hosts": "gitlab.example.com,*.corp.example"}"#,
            ),
            ("bad", r#"{"allowed_hosts": ["not a host/"]}"#),
            ("nojson", "allowed_hosts=x"),
        ] {
            std::fs::write(acme.join(name), "tok").unwrap();
            std::fs::write(acme.join(format!("{name}{SIDECAR_SUFFIX}")), sidecar).unwrap();
        }
        let gitlab = url::Url::parse("https://gitlab.example.com/").unwrap();
        let evil = url::Url::parse("https://evil.test/").unwrap();
        for name in ["list", "text"] {
            let reference = r(&format!("authref://file/tenants/acme/{name}"));
            let (_, binding) = resolve(Some(dir.path()), &folder("acme"), &reference)
                .await
                .unwrap();
            assert!(
                binding.permits(&gitlab) && !binding.permits(&evil),
                "{name}"
            );
        }
        for name in ["bad", "nojson"] {
            let reference = r(&format!("authref://file/tenants/acme/{name}"));
            let e = resolve(Some(dir.path()), &folder("acme"), &reference)
                .await
                .unwrap_err();
            assert!(matches!(e, SecretError::Malformed { .. }), "{name}: {e}");
            assert!(!e.to_string().contains("tok\""), "{e}");
        }
    }
}

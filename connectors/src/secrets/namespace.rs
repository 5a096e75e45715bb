//! Tenant namespaces: which AuthRefs a tenant may resolve.
//!
//! A reference names the backend's real location (the Vault path, the file under
//! `secrets_dir`, the variable): it is never rewritten, so what an operator reads in Vault's
//! audit log is what the tenant wrote. A tenant may resolve only references inside its own
//! space:
//! - vault: `<mount>/<prefix>/…` with `<mount>` one of its mounts and `<prefix>` its folder
//!   (default `tenants/{tenant}`), compared segment by segment;
//! - file: `<folder>/…` under `secrets_dir` (default `tenants/{tenant}`); the resolver also
//!   checks that no symlink leaves that folder;
//! - env: only variables the operator listed for that tenant, and never one of the daemon's
//!   own ([`RESERVED_ENV_PREFIXES`], [`RESERVED_ENV_NAMES`]).
//!
//! [`Namespaces::new`] refuses at start-up a configuration that could hand one tenant another's
//! space (a folder template without `{tenant}`, an override that is another tenant's default
//! folder, overlapping overrides, an env pattern that reaches a reserved variable).

use std::collections::BTreeMap;
use std::fmt;

use crate::authref::{AuthRef, Backend, is_safe as is_safe_segment};
use crate::settings::{SecretsSettings, TenantSecretsSettings, VaultAuth};

/// The placeholder of the tenant id in folder templates.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// Where the namespaces are explained; every refusal points there.
pub const DOCS: &str = "docs/security.md#tenant-namespaces";

/// Prefixes of the daemon's own environment variables (its settings, its identity in clouds
/// and vaults, the process's loader). No tenant can name one, whatever the configuration says.
pub const RESERVED_ENV_PREFIXES: [&str; 20] = [
    "VAULT_",
    "BAO_",
    "STELLA_",
    "DATABASE_",
    "PG",
    "OTEL_",
    "NATS_",
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "CLOUDSDK_",
    "KUBERNETES_",
    "CREDENTIALS_DIRECTORY",
    "RUST_",
    "CARGO_",
    "LD_",
    "SSL_CERT_",
    "SYSTEMD_",
    "DBUS_",
];

/// The process's own variables, reserved by exact name.
pub const RESERVED_ENV_NAMES: [&str; 13] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "HOSTNAME",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "INVOCATION_ID",
];

/// A configuration of the namespaces that would let a tenant reach what is not its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error("connectors.secrets.{field}: {problem}")]
    Invalid { field: String, problem: String },
}

impl NamespaceError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        NamespaceError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Why a reference is outside the tenant's namespace. The message names the rule and the
/// tenant's own space, never anything of another tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outside {
    pub message: String,
}

impl fmt::Display for Outside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see {DOCS})", self.message)
    }
}

/// A folder template (`tenants/{tenant}`) or a literal folder.
#[derive(Clone, Debug)]
struct Folder(String);

impl Folder {
    fn parse(field: &str, template: &str) -> Result<Self, NamespaceError> {
        let template = template.trim_matches('/');
        if template.matches(TENANT_PLACEHOLDER).count() > 1 {
            return Err(NamespaceError::invalid(field, "name {tenant} at most once"));
        }
        let probe = template.replace(TENANT_PLACEHOLDER, "t");
        if !probe.is_empty() && !probe.split('/').all(is_safe_segment) {
            return Err(NamespaceError::invalid(
                field,
                "segments are [A-Za-z0-9._-], with no empty, '.' or '..' segment",
            ));
        }
        Ok(Folder(template.to_owned()))
    }

    fn has_tenant(&self) -> bool {
        self.0.contains(TENANT_PLACEHOLDER)
    }

    /// The folder's segments for `tenant`.
    fn for_tenant(&self, tenant: &str) -> Vec<String> {
        let folder = self.0.replace(TENANT_PLACEHOLDER, tenant);
        folder
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whose default folders `literal` reaches into: one tenant's (it is that folder or
    /// below it), or every tenant's (it is above the tenant segment).
    fn reaches(&self, literal: &[String]) -> Option<Reach> {
        let template: Vec<&str> = self.0.split('/').filter(|s| !s.is_empty()).collect();
        let mut owner = None;
        for (t, l) in template.iter().zip(literal) {
            match t.split_once(TENANT_PLACEHOLDER) {
                Some((before, after)) => {
                    let tenant = l.strip_prefix(before)?.strip_suffix(after)?;
                    owner = Some(tenant.to_owned());
                }
                None if t == l => {}
                None => return None,
            }
        }
        match owner {
            Some(tenant) if literal.len() >= template.len() => Some(Reach::Tenant(tenant)),
            _ if literal.len() < template.len() => Some(Reach::Everyone),
            _ => None,
        }
    }
}

/// What a literal folder reaches of the default folders.
#[derive(Debug, PartialEq, Eq)]
enum Reach {
    Tenant(String),
    Everyone,
}

/// `segments` starts with `prefix` and names something below it.
fn strictly_under(segments: &[&str], prefix: &[String]) -> bool {
    segments.len() > prefix.len() && prefix.iter().zip(segments).all(|(p, s)| p == s)
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// One allowed environment variable name, or a prefix (`ACME_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum EnvPattern {
    Exact(String),
    Prefix(String),
}

impl EnvPattern {
    fn parse(field: &str, raw: &str) -> Result<Self, NamespaceError> {
        let (pattern, body) = match raw.strip_suffix('*') {
            Some(prefix) => (EnvPattern::Prefix(prefix.to_owned()), prefix),
            None => (EnvPattern::Exact(raw.to_owned()), raw),
        };
        if body.contains('*') || !body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(NamespaceError::invalid(
                field,
                "an entry is a variable name, or a prefix followed by one '*'",
            ));
        }
        if matches!(&pattern, EnvPattern::Prefix(p) if p.len() < 2) {
            return Err(NamespaceError::invalid(
                field,
                "a prefix pattern needs at least two characters before '*'",
            ));
        }
        if let Some(reserved) = pattern.reaches_reserved() {
            return Err(NamespaceError::invalid(
                field,
                format!("an entry may not reach the daemon's own variables ({reserved})"),
            ));
        }
        Ok(pattern)
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            EnvPattern::Exact(exact) => exact == name,
            EnvPattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }

    /// A reserved name or prefix this pattern could match, if any.
    fn reaches_reserved(&self) -> Option<&'static str> {
        match self {
            EnvPattern::Exact(name) => reserved_env(name),
            EnvPattern::Prefix(prefix) => RESERVED_ENV_PREFIXES
                .into_iter()
                .find(|r| r.starts_with(prefix.as_str()) || prefix.starts_with(r))
                .or_else(|| {
                    RESERVED_ENV_NAMES
                        .into_iter()
                        .find(|r| r.starts_with(prefix.as_str()))
                }),
        }
    }
}

/// The reserved prefix or name `name` falls under, if any.
pub fn reserved_env(name: &str) -> Option<&'static str> {
    RESERVED_ENV_PREFIXES
        .into_iter()
        .find(|r| name.starts_with(r))
        .or_else(|| RESERVED_ENV_NAMES.into_iter().find(|r| *r == name))
}

/// One tenant's configured space.
#[derive(Clone, Debug)]
struct TenantSpace {
    env: Vec<EnvPattern>,
    vault_prefix: Option<Folder>,
    vault_mounts: Option<Vec<String>>,
    file_dir: Option<Folder>,
    vault_auth: Option<VaultAuth>,
}

/// Every tenant's namespace, checked once at start-up.
#[derive(Clone, Debug)]
pub struct Namespaces {
    vault_mounts: Vec<String>,
    vault_prefix: Folder,
    file_dir: Folder,
    tenants: BTreeMap<String, TenantSpace>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Self::new(&SecretsSettings::default()).expect("the default namespaces are valid")
    }
}

impl Namespaces {
    /// Compiles and checks the namespaces of `settings`.
    ///
    /// # Errors
    /// [`NamespaceError`] for a configuration that could give a tenant another's space.
    pub fn new(settings: &SecretsSettings) -> Result<Self, NamespaceError> {
        let vault_prefix = Folder::parse("vault_tenant_prefix", &settings.vault_tenant_prefix)?;
        let file_dir = Folder::parse("file_tenant_dir", &settings.file_tenant_dir)?;
        for (field, folder) in [
            ("vault_tenant_prefix", &vault_prefix),
            ("file_tenant_dir", &file_dir),
        ] {
            if !folder.has_tenant() {
                return Err(NamespaceError::invalid(
                    field,
                    "must contain {tenant}, or every tenant would share one folder",
                ));
            }
        }
        check_mounts("vault_mounts", &settings.vault_mounts)?;
        let mut tenants = BTreeMap::new();
        for (tenant, t) in &settings.tenants {
            let field = |name: &str| format!("tenants.{tenant}.{name}");
            if !is_safe_segment(tenant) {
                return Err(NamespaceError::invalid(
                    format!("tenants.{tenant}"),
                    "a tenant id is [A-Za-z0-9._-]",
                ));
            }
            tenants.insert(tenant.clone(), compile_tenant(t, &field)?);
        }
        let namespaces = Self {
            vault_mounts: settings.vault_mounts.clone(),
            vault_prefix,
            file_dir,
            tenants,
        };
        namespaces.check_overrides()?;
        Ok(namespaces)
    }

    /// An override must not be another tenant's folder, by default or by override.
    fn check_overrides(&self) -> Result<(), NamespaceError> {
        for (kind, default) in [
            ("vault_prefix", &self.vault_prefix),
            ("file_dir", &self.file_dir),
        ] {
            let folder_of = |tenant: &str| -> Vec<String> {
                let own = self.tenants.get(tenant).and_then(|t| match kind {
                    "vault_prefix" => t.vault_prefix.as_ref(),
                    _ => t.file_dir.as_ref(),
                });
                own.unwrap_or(default).for_tenant(tenant)
            };
            let configured: Vec<(&String, Vec<String>)> = self
                .tenants
                .keys()
                .map(|tenant| (tenant, folder_of(tenant)))
                .collect();
            for (tenant, folder) in &configured {
                let field = format!("tenants.{tenant}.{kind}");
                match default.reaches(folder) {
                    Some(Reach::Tenant(other)) if &other != *tenant => {
                        return Err(NamespaceError::invalid(
                            field,
                            format!("is in the default folder of tenant {other}"),
                        ));
                    }
                    Some(Reach::Everyone) => {
                        return Err(NamespaceError::invalid(
                            field,
                            "holds the default folders of every tenant",
                        ));
                    }
                    _ => {}
                }
                if let Some((other, _)) = configured
                    .iter()
                    .find(|(o, f)| o != tenant && overlaps(folder, f))
                {
                    return Err(NamespaceError::invalid(
                        field,
                        format!("overlaps the folder of tenant {other}"),
                    ));
                }
                if folder.is_empty() {
                    return Err(NamespaceError::invalid(field, "must not be empty"));
                }
            }
        }
        Ok(())
    }

    /// The Vault credentials configured for `tenant`, if any.
    pub fn vault_auth(&self, tenant: &str) -> Option<&VaultAuth> {
        self.tenants.get(tenant)?.vault_auth.as_ref()
    }

    /// Every tenant that has Vault credentials of its own.
    pub fn tenants_with_vault_auth(&self) -> impl Iterator<Item = (&str, &VaultAuth)> {
        self.tenants
            .iter()
            .filter_map(|(t, s)| Some((t.as_str(), s.vault_auth.as_ref()?)))
    }

    /// The mounts `tenant` may name.
    pub fn vault_mounts(&self, tenant: &str) -> &[String] {
        self.tenants
            .get(tenant)
            .and_then(|t| t.vault_mounts.as_deref())
            .unwrap_or(&self.vault_mounts)
    }

    /// The folder `tenant` owns inside each of its mounts.
    pub fn vault_folder(&self, tenant: &str) -> Vec<String> {
        self.tenants
            .get(tenant)
            .and_then(|t| t.vault_prefix.as_ref())
            .unwrap_or(&self.vault_prefix)
            .for_tenant(tenant)
    }

    /// The folder `tenant` owns under `secrets_dir`.
    pub fn file_folder(&self, tenant: &str) -> Vec<String> {
        self.tenants
            .get(tenant)
            .and_then(|t| t.file_dir.as_ref())
            .unwrap_or(&self.file_dir)
            .for_tenant(tenant)
    }

    /// Whether `tenant` may resolve `reference`.
    ///
    /// # Errors
    /// [`Outside`] naming the rule that refused it and the tenant's own space.
    pub fn check(&self, tenant: &str, reference: &AuthRef) -> Result<(), Outside> {
        if !is_safe_segment(tenant) {
            return Err(Outside {
                message: "this tenant id has no secret namespace".into(),
            });
        }
        let segments: Vec<&str> = reference.path.split('/').collect();
        match reference.backend {
            Backend::Vault => {
                let mounts = self.vault_mounts(tenant);
                let folder = self.vault_folder(tenant);
                let inside = segments.split_first().is_some_and(|(mount, rest)| {
                    mounts.iter().any(|m| m == mount) && strictly_under(rest, &folder)
                });
                if inside {
                    return Ok(());
                }
                let folder = folder.join("/");
                let places: Vec<String> = mounts.iter().map(|m| format!("{m}/{folder}/")).collect();
                Err(Outside {
                    message: if places.is_empty() {
                        "this tenant has no Vault mount".into()
                    } else {
                        format!(
                            "outside this tenant's namespace: vault references must be under {}",
                            places.join(" or ")
                        )
                    },
                })
            }
            Backend::File => {
                let folder = self.file_folder(tenant);
                if strictly_under(&segments, &folder) {
                    return Ok(());
                }
                Err(Outside {
                    message: format!(
                        "outside this tenant's namespace: file references must be under {}/",
                        folder.join("/")
                    ),
                })
            }
            Backend::Env => {
                let name = reference.path.as_str();
                if reserved_env(name).is_some() {
                    return Err(Outside {
                        message: "the daemon's own environment variables cannot be referenced"
                            .into(),
                    });
                }
                let allowed = self
                    .tenants
                    .get(tenant)
                    .is_some_and(|t| t.env.iter().any(|p| p.matches(name)));
                if allowed {
                    Ok(())
                } else {
                    Err(Outside {
                        message: "outside this tenant's namespace: the operator has not mapped \
                                  this environment variable to the tenant"
                            .into(),
                    })
                }
            }
        }
    }
}

fn check_mounts(field: &str, mounts: &[String]) -> Result<(), NamespaceError> {
    if !mounts.iter().all(|m| is_safe_segment(m)) {
        return Err(NamespaceError::invalid(
            field,
            "a mount is one segment of [A-Za-z0-9._-]",
        ));
    }
    if mounts
        .iter()
        .any(|m| matches!(m.as_str(), "sys" | "auth" | "identity" | "cubbyhole"))
    {
        return Err(NamespaceError::invalid(
            field,
            "sys, auth, identity and cubbyhole are Vault's own paths, not KV mounts",
        ));
    }
    Ok(())
}

fn compile_tenant(
    t: &TenantSecretsSettings,
    field: &dyn Fn(&str) -> String,
) -> Result<TenantSpace, NamespaceError> {
    let env = t
        .env
        .iter()
        .map(|p| EnvPattern::parse(&field("env"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let vault_prefix = t
        .vault_prefix
        .as_deref()
        .map(|p| Folder::parse(&field("vault_prefix"), p))
        .transpose()?;
    let file_dir = t
        .file_dir
        .as_deref()
        .map(|p| Folder::parse(&field("file_dir"), p))
        .transpose()?;
    if let Some(mounts) = &t.vault_mounts {
        check_mounts(&field("vault_mounts"), mounts)?;
    }
    if let Some(VaultAuth::Approle { mount, role_id, .. }) = &t.vault_auth
        && (!is_safe_segment(mount) || role_id.trim().is_empty())
    {
        return Err(NamespaceError::invalid(
            field("vault_auth"),
            "an AppRole needs a mount of [A-Za-z0-9._-] and a role_id",
        ));
    }
    Ok(TenantSpace {
        env,
        vault_prefix,
        vault_mounts: t.vault_mounts.clone(),
        file_dir,
        vault_auth: t.vault_auth.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> AuthRef {
        s.parse().unwrap()
    }

    fn with_tenants(tenants: &[(&str, TenantSecretsSettings)]) -> SecretsSettings {
        SecretsSettings {
            tenants: tenants
                .iter()
                .map(|(t, s)| ((*t).to_owned(), s.clone()))
                .collect(),
            ..SecretsSettings::default()
        }
    }

    #[test]
    fn vault_references_stay_in_the_tenants_folder_of_an_allowed_mount() {
        let ns = Namespaces::default();
        ns.check(
            "acme",
            &r("authref://vault/secret/tenants/acme/gitlab#token"),
        )
        .unwrap();
        ns.check("acme", &r("authref://vault/secret/tenants/acme/ci/deep/x"))
            .unwrap();
        for outside in [
            "authref://vault/secret/tenants/beta/gitlab#token",
            "authref://vault/secret/tenants/acme",
            "authref://vault/secret/tenants/acme-evil/x",
            "authref://vault/secret/tenants/acm/x",
            "authref://vault/secret/ci/gitlab",
            "authref://vault/other/tenants/acme/x",
            "authref://vault/sys/tenants/acme/x",
        ] {
            let e = ns.check("acme", &r(outside)).unwrap_err();
            assert!(e.message.contains("secret/tenants/acme/"), "{outside}: {e}");
            assert!(!e.message.contains("beta"), "{e}");
        }
    }

    #[test]
    fn file_references_stay_in_the_tenants_folder() {
        let ns = Namespaces::default();
        ns.check("acme", &r("authref://file/tenants/acme/gitlab"))
            .unwrap();
        for outside in [
            "authref://file/tenants/beta/gitlab",
            "authref://file/gitlab",
            "authref://file/tenants/acme",
            "authref://file/tenants/acmex/gitlab",
        ] {
            assert!(ns.check("acme", &r(outside)).is_err(), "{outside}");
        }
    }

    #[test]
    fn env_resolves_only_what_the_operator_mapped_and_never_the_daemons_own() {
        let ns = Namespaces::new(&with_tenants(&[(
            "acme",
            TenantSecretsSettings {
                env: vec!["ACME_*".into(), "GITLAB_TOKEN_ACME".into()],
                ..Default::default()
            },
        )]))
        .unwrap();
        ns.check("acme", &r("authref://env/ACME_GITLAB")).unwrap();
        ns.check("acme", &r("authref://env/GITLAB_TOKEN_ACME"))
            .unwrap();
        for refused in ["PATH", "VAULT_TOKEN", "DATABASE_URL", "GITLAB_TOKEN", "ACM"] {
            let reference = r(&format!("authref://env/{refused}"));
            assert!(ns.check("acme", &reference).is_err(), "{refused}");
        }
        // A tenant the operator did not list gets no variable at all.
        assert!(ns.check("beta", &r("authref://env/ACME_GITLAB")).is_err());
    }

    #[test]
    fn env_patterns_that_reach_the_daemons_variables_are_refused_at_start_up() {
        for pattern in [
            "*",
            "V*",
            "VAULT_TOKEN",
            "VAULT_*",
            "DATABASE_URL",
            "PG*",
            "PGPASSWORD",
            "PAT*",
            "PATH",
            "STELLA_X",
            "A*B",
            "a-b",
        ] {
            let settings = with_tenants(&[(
                "acme",
                TenantSecretsSettings {
                    env: vec![pattern.into()],
                    ..Default::default()
                },
            )]);
            assert!(Namespaces::new(&settings).is_err(), "{pattern}");
        }
    }

    #[test]
    fn folders_that_would_share_or_steal_a_space_are_refused() {
        let shared = SecretsSettings {
            vault_tenant_prefix: "shared".into(),
            ..SecretsSettings::default()
        };
        assert!(Namespaces::new(&shared).is_err());
        let steal = with_tenants(&[(
            "acme",
            TenantSecretsSettings {
                vault_prefix: Some("tenants/beta".into()),
                ..Default::default()
            },
        )]);
        let e = Namespaces::new(&steal).unwrap_err();
        assert!(e.to_string().contains("tenant beta"), "{e}");
        let overlap = with_tenants(&[
            (
                "acme",
                TenantSecretsSettings {
                    file_dir: Some("teams".into()),
                    ..Default::default()
                },
            ),
            (
                "beta",
                TenantSecretsSettings {
                    file_dir: Some("teams/beta".into()),
                    ..Default::default()
                },
            ),
        ]);
        assert!(Namespaces::new(&overlap).is_err());
        for above_or_below in ["tenants", "tenants/beta/acme", ""] {
            let settings = with_tenants(&[(
                "acme",
                TenantSecretsSettings {
                    vault_prefix: Some(above_or_below.into()),
                    ..Default::default()
                },
            )]);
            assert!(Namespaces::new(&settings).is_err(), "{above_or_below:?}");
        }
        let below_own = with_tenants(&[(
            "acme",
            TenantSecretsSettings {
                vault_prefix: Some("tenants/acme/ci".into()),
                ..Default::default()
            },
        )]);
        Namespaces::new(&below_own).unwrap();
        let sys = SecretsSettings {
            vault_mounts: vec!["sys".into()],
            ..SecretsSettings::default()
        };
        assert!(Namespaces::new(&sys).is_err());
        let traversal = SecretsSettings {
            file_tenant_dir: "../{tenant}".into(),
            ..SecretsSettings::default()
        };
        assert!(Namespaces::new(&traversal).is_err());
    }

    #[test]
    fn an_override_moves_a_tenants_folder() {
        let ns = Namespaces::new(&with_tenants(&[(
            "acme",
            TenantSecretsSettings {
                vault_prefix: Some("teams/acme-corp".into()),
                vault_mounts: Some(vec!["kv".into()]),
                ..Default::default()
            },
        )]))
        .unwrap();
        ns.check("acme", &r("authref://vault/kv/teams/acme-corp/x"))
            .unwrap();
        assert!(
            ns.check("acme", &r("authref://vault/secret/tenants/acme/x"))
                .is_err()
        );
        // Other tenants keep the defaults.
        ns.check("beta", &r("authref://vault/secret/tenants/beta/x"))
            .unwrap();
    }

    #[test]
    fn tenant_ids_that_are_not_one_safe_segment_have_no_namespace() {
        let ns = Namespaces::default();
        for tenant in [".", "..", "", "a/b"] {
            assert!(
                ns.check(tenant, &r("authref://vault/secret/tenants/x/y"))
                    .is_err()
            );
        }
    }
}

//! Discovery: which plugin folders hold a usable plugin, and why the others were rejected.
//!
//! [`discover`] only reads the filesystem: it starts nothing and registers nothing, so the
//! registry actor can call it at start-up and on every `POST /plugins/discover`, diff the result
//! against what it knows ([`diff`]), and act on the difference.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::manifest::{
    MANIFEST_FILE, MAX_MANIFEST_BYTES, MAX_SCHEMA_BYTES, PluginManifest, RawManifest,
};
use super::protocol::SUPPORTED_PROTOCOL_VERSIONS;

/// Most plugin folders read from one directory; the rest are reported in `dir_errors`.
pub const MAX_PLUGINS_PER_DIR: usize = 1000;

/// A plugin whose manifest checked out and whose executable exists.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredPlugin {
    pub manifest: PluginManifest,
    /// The plugin folder (canonical): the child's working directory.
    pub dir: PathBuf,
    /// The executable (canonical, inside `dir`).
    pub executable: PathBuf,
    /// SHA-256 (hex) over the manifest, the schema and the executable's bytes: a change of any
    /// of them is an update.
    pub fingerprint: String,
}

/// Who already provides a type or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A connector compiled into the daemon.
    Builtin,
    /// A plugin found earlier in the scan (earlier directory, or earlier folder name).
    Plugin { id: String, dir: PathBuf },
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Builtin => f.write_str("a built-in connector"),
            Owner::Plugin { id, dir } => write!(f, "plugin {id} at {}", dir.display()),
        }
    }
}

/// Why a plugin folder was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// `plugin.toml` is unreadable, too large, not TOML, has unknown or invalid keys, or its
    /// config schema is missing or malformed.
    BadManifest { message: String },
    /// Another plugin or a built-in connector already provides this provider type.
    DuplicateType { provider_type: String, owner: Owner },
    /// Another plugin already has this id.
    DuplicateId { id: String, owner: Owner },
    /// The manifest's protocol version is not one this daemon speaks.
    IncompatibleProtocol { found: u32, supported: Vec<u32> },
    /// The executable does not exist, or lies outside the plugin folder.
    MissingExecutable { path: PathBuf },
    /// The executable exists but is not a file with an execute bit.
    NotExecutable { path: PathBuf },
}

impl RejectReason {
    /// The stable code, for `plugin_metadata` and API answers.
    pub const fn code(&self) -> &'static str {
        match self {
            RejectReason::BadManifest { .. } => "bad_manifest",
            RejectReason::DuplicateType { .. } => "duplicate_type",
            RejectReason::DuplicateId { .. } => "duplicate_id",
            RejectReason::IncompatibleProtocol { .. } => "incompatible_protocol",
            RejectReason::MissingExecutable { .. } => "missing_executable",
            RejectReason::NotExecutable { .. } => "not_executable",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::BadManifest { message } => write!(f, "bad manifest: {message}"),
            RejectReason::DuplicateType {
                provider_type,
                owner,
            } => write!(
                f,
                "provider type {provider_type} is already provided by {owner}"
            ),
            RejectReason::DuplicateId { id, owner } => {
                write!(f, "plugin id {id} is already used by {owner}")
            }
            RejectReason::IncompatibleProtocol { found, supported } => write!(
                f,
                "protocol version {found} is not supported (supported: {supported:?})"
            ),
            RejectReason::MissingExecutable { path } => write!(
                f,
                "executable {} does not exist inside the plugin folder",
                path.display()
            ),
            RejectReason::NotExecutable { path } => {
                write!(f, "executable {} is not an executable file", path.display())
            }
        }
    }
}

/// A plugin folder that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The plugin folder.
    pub dir: PathBuf,
    /// The manifest's id, when it could be read.
    pub id: Option<String>,
    /// The manifest's provider type, when it could be read.
    pub provider_type: Option<String>,
    pub reason: RejectReason,
}

/// What one scan found. Both lists are in scan order: directories in the order given, plugin
/// folders sorted by name; on a clash, the first one found wins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovery {
    pub plugins: Vec<DiscoveredPlugin>,
    pub rejected: Vec<Rejected>,
    /// Configured directories that could not be listed (missing, not a directory, too many
    /// entries), with the error.
    pub dir_errors: Vec<(PathBuf, String)>,
}

impl Discovery {
    /// The accepted plugin with this id.
    pub fn plugin(&self, id: &str) -> Option<&DiscoveredPlugin> {
        self.plugins.iter().find(|p| p.manifest.id == id)
    }
}

/// Scans `dirs` for `<dir>/<plugin>/plugin.toml`. `builtin_types` are the provider types of
/// the built-in connectors, which a plugin may not take over.
///
/// Folders without a `plugin.toml` and names starting with `.` are skipped silently. Blocking
/// filesystem I/O: call it from `spawn_blocking` in async code.
pub fn discover(dirs: &[PathBuf], builtin_types: &[&str]) -> Discovery {
    let mut out = Discovery::default();
    let mut types: BTreeMap<String, Owner> = builtin_types
        .iter()
        .map(|t| ((*t).to_owned(), Owner::Builtin))
        .collect();
    let mut ids: BTreeMap<String, Owner> = BTreeMap::new();
    let mut seen_dirs = BTreeSet::new();
    for dir in dirs {
        let folders = match list_folders(dir) {
            Ok(folders) => folders,
            Err(e) => {
                out.dir_errors.push((dir.clone(), e));
                continue;
            }
        };
        for folder in folders {
            // The same folder reached twice (a directory listed twice) is one plugin.
            let canonical = folder.canonicalize().unwrap_or_else(|_| folder.clone());
            if !seen_dirs.insert(canonical.clone()) {
                continue;
            }
            let plugin = match load(&canonical) {
                Ok(plugin) => plugin,
                Err(failure) => {
                    let (manifest, reason) = *failure;
                    out.rejected.push(Rejected {
                        dir: canonical,
                        id: manifest.as_ref().map(|m| m.0.clone()),
                        provider_type: manifest.map(|m| m.1),
                        reason,
                    });
                    continue;
                }
            };
            let m = &plugin.manifest;
            let clash = if let Some(owner) = ids.get(&m.id) {
                Some(RejectReason::DuplicateId {
                    id: m.id.clone(),
                    owner: owner.clone(),
                })
            } else {
                types
                    .get(&m.provider_type)
                    .map(|owner| RejectReason::DuplicateType {
                        provider_type: m.provider_type.clone(),
                        owner: owner.clone(),
                    })
            };
            if let Some(reason) = clash {
                out.rejected.push(Rejected {
                    dir: plugin.dir.clone(),
                    id: Some(m.id.clone()),
                    provider_type: Some(m.provider_type.clone()),
                    reason,
                });
                continue;
            }
            let owner = Owner::Plugin {
                id: m.id.clone(),
                dir: plugin.dir.clone(),
            };
            ids.insert(m.id.clone(), owner.clone());
            types.insert(m.provider_type.clone(), owner);
            out.plugins.push(plugin);
        }
    }
    out
}

fn list_folders(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    let mut folders = Vec::new();
    for (n, entry) in entries.enumerate() {
        if n >= MAX_PLUGINS_PER_DIR * 4 {
            return Err(format!(
                "more than {} entries; at most {MAX_PLUGINS_PER_DIR} plugins per directory",
                MAX_PLUGINS_PER_DIR * 4
            ));
        }
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_dir() && path.join(MANIFEST_FILE).exists() {
            folders.push(path);
        }
    }
    if folders.len() > MAX_PLUGINS_PER_DIR {
        return Err(format!("more than {MAX_PLUGINS_PER_DIR} plugin folders"));
    }
    folders.sort();
    Ok(folders)
}

type Named = Option<(String, String)>;

fn bad(message: impl Into<String>) -> RejectReason {
    RejectReason::BadManifest {
        message: message.into(),
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(bytes)
}

/// Resolves `relative` inside `dir`, refusing absolute paths and `..`.
fn inside(dir: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    plain.then(|| dir.join(rel))
}

/// A rejection, with the manifest's id and type when they could be read.
type LoadError = Box<(Named, RejectReason)>;

/// Loads one plugin folder (`dir` canonical), without checking for clashes with others.
///
/// # Errors
/// Why the folder is rejected.
pub fn load(dir: &Path) -> Result<DiscoveredPlugin, LoadError> {
    load_inner(dir).map_err(Box::new)
}

// Private and cold (one call per plugin folder and scan); `load` boxes the error.
#[allow(clippy::result_large_err)]
fn load_inner(dir: &Path) -> Result<DiscoveredPlugin, (Named, RejectReason)> {
    let manifest_bytes =
        read_limited(&dir.join(MANIFEST_FILE), MAX_MANIFEST_BYTES).map_err(|e| (None, bad(e)))?;
    let text = std::str::from_utf8(&manifest_bytes).map_err(|_| (None, bad("not UTF-8")))?;
    let raw = RawManifest::parse(text).map_err(|e| (None, bad(e)))?;
    let named = Some((raw.id.clone(), raw.provider_type.clone()));
    let mut schema_bytes = Vec::new();
    let manifest = raw
        .check(|file| {
            let path = inside(dir, file)
                .ok_or("config_schema_file: must be a relative path inside the plugin folder")?;
            schema_bytes = read_limited(&path, MAX_SCHEMA_BYTES)?;
            serde_json::from_slice::<Value>(&schema_bytes)
                .map_err(|e| format!("config_schema_file: not JSON: {e}"))
        })
        .map_err(|e| (named.clone(), bad(e)))?;
    if !SUPPORTED_PROTOCOL_VERSIONS.contains(&manifest.protocol_version) {
        return Err((
            named,
            RejectReason::IncompatibleProtocol {
                found: manifest.protocol_version,
                supported: SUPPORTED_PROTOCOL_VERSIONS.to_vec(),
            },
        ));
    }
    let missing = |path: PathBuf| (named.clone(), RejectReason::MissingExecutable { path });
    let written = inside(dir, &manifest.executable)
        .ok_or_else(|| missing(PathBuf::from(&manifest.executable)))?;
    let executable = written
        .canonicalize()
        .map_err(|_| missing(written.clone()))?;
    if !executable.starts_with(dir) {
        return Err(missing(written));
    }
    let meta = std::fs::metadata(&executable).map_err(|_| missing(written.clone()))?;
    if !meta.is_file() || !is_executable(&meta) {
        return Err((named, RejectReason::NotExecutable { path: written }));
    }
    let mut hash = Sha256::new();
    hash.update((manifest_bytes.len() as u64).to_le_bytes());
    hash.update(&manifest_bytes);
    hash.update((schema_bytes.len() as u64).to_le_bytes());
    hash.update(&schema_bytes);
    let mut file = std::fs::File::open(&executable).map_err(|_| missing(written.clone()))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Bounded by the file's size: read returns 0 at its end.
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(e) => return Err((named, bad(format!("reading the executable: {e}")))),
        }
    }
    Ok(DiscoveredPlugin {
        manifest,
        dir: dir.to_path_buf(),
        executable,
        fingerprint: hex::encode(hash.finalize()),
    })
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

/// What changed between a previous scan (plugin id → fingerprint, e.g. from `plugin_metadata`)
/// and this one. Ids are sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryDiff {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Compares what was known with what a scan found. A plugin that was known and is now rejected
/// counts as removed (it no longer provides its type).
pub fn diff(known: &BTreeMap<String, String>, found: &Discovery) -> DiscoveryDiff {
    let mut out = DiscoveryDiff::default();
    let now: BTreeMap<&str, &str> = found
        .plugins
        .iter()
        .map(|p| (p.manifest.id.as_str(), p.fingerprint.as_str()))
        .collect();
    for (id, fingerprint) in &now {
        match known.get(*id) {
            None => out.added.push((*id).to_owned()),
            Some(old) if old != fingerprint => out.updated.push((*id).to_owned()),
            Some(_) => out.unchanged.push((*id).to_owned()),
        }
    }
    out.removed = known
        .keys()
        .filter(|id| !now.contains_key(id.as_str()))
        .cloned()
        .collect();
    out
}

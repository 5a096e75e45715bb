//! Errors of the catalog, in domain terms.

use sea_orm::DbErr;
use uuid::Uuid;

/// What can go wrong reading or changing the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No such live object in the caller's tenant (other tenants' objects are not found either).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: Uuid },
    /// The change conflicts with another live object, such as a name already in use.
    #[error("{field}: {message}")]
    Conflict {
        field: &'static str,
        message: String,
    },
    /// The caller's version (ETag) is not the current one.
    #[error("version {expected} is stale; the current version is {current}")]
    VersionMismatch { expected: i64, current: i64 },
    /// The catalog actor is not running (the daemon is shutting down).
    #[error("the catalog is unavailable")]
    Unavailable,
    /// The database failed.
    #[error("database error")]
    Db(#[source] DbErr),
}

impl From<DbErr> for CatalogError {
    fn from(e: DbErr) -> Self {
        CatalogError::Db(e)
    }
}

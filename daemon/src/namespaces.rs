//! The start-up check of stored credential references against the tenants' secret
//! namespaces.
//!
//! Rows written before namespaces existed (or before the operator moved a tenant's folder) may
//! name secrets outside their tenant's space. They are kept as they are, nothing is lost: the
//! resolver refuses them at use, so their checks report `credential_unavailable` with the
//! reason, and `GET /api/v1/integrations?status=unhealthy` lists them to the tenant. This
//! check lists them all to the operator in one WARN line.

use actors::Store;
use actors::store::references::{ReferenceHolder, StoredReference};
use connectors::authref::AuthRef;
use connectors::secrets::{SecretResolver, TenantRef};

/// Rows read per query.
const PAGE: u64 = 1_000;
/// Most references named in the WARN line; the count covers all.
const MAX_LISTED: usize = 50;

/// Every live reference outside its tenant's namespace (or no longer parseable).
///
/// # Errors
/// [`sea_orm::DbErr`] when the catalog cannot be read.
pub async fn outside(
    store: &Store,
    secrets: &SecretResolver,
) -> Result<Vec<StoredReference>, sea_orm::DbErr> {
    let system = store.system();
    let mut found = Vec::new();
    for holder in [ReferenceHolder::Integration, ReferenceHolder::Subscription] {
        let mut after = None;
        loop {
            let page = system.credential_references(holder, after, PAGE).await?;
            after = page.last().map(|r| r.id);
            let done = (page.len() as u64) < PAGE;
            found.extend(page.into_iter().filter(|r| {
                r.reference
                    .parse::<AuthRef>()
                    .map(|parsed| secrets.check(&TenantRef::new(r.tenant_id.as_str(), parsed)))
                    .map_or(true, |checked| checked.is_err())
            }));
            if done {
                break;
            }
        }
    }
    Ok(found)
}

/// Runs [`outside`] and reports what it found in one WARN line.
pub async fn report(store: Store, secrets: SecretResolver) {
    match outside(&store, &secrets).await {
        Ok(found) if found.is_empty() => {
            tracing::debug!(
                message = "Every stored credential reference is in its tenant's namespace."
            );
        }
        Ok(found) => {
            let mut listed: Vec<String> = found
                .iter()
                .take(MAX_LISTED)
                .map(|r| format!("{} {} of tenant {}", r.holder.as_str(), r.id, r.tenant_id))
                .collect();
            if found.len() > MAX_LISTED {
                listed.push(format!("and {} more", found.len() - MAX_LISTED));
            }
            tracing::warn!(
                message = "Stored credential references lie outside their tenant's secret \
                           namespace; they fail with credential_unavailable until moved (see \
                           docs/security.md#tenant-namespaces).",
                count = found.len(),
                references = %listed.join(", "),
            );
        }
        Err(error) => {
            tracing::warn!(message = "Could not check stored credential references.", %error);
        }
    }
}

//! Every stored credential reference of every tenant, for the start-up check that finds
//! references outside their tenant's secret namespace (rows written before namespaces
//! existed, or before the operator moved a tenant's folder).

use entity::{integration, webhook_subscription};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::SystemStore;

/// What holds a stored reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceHolder {
    /// An integration's `authRef`.
    Integration,
    /// A webhook subscription's signing `secretAuthRef`.
    Subscription,
}

impl ReferenceHolder {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReferenceHolder::Integration => "integration",
            ReferenceHolder::Subscription => "subscription",
        }
    }
}

/// One stored reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReference {
    pub holder: ReferenceHolder,
    pub id: Uuid,
    pub tenant_id: String,
    pub reference: String,
}

impl SystemStore {
    /// A page (by id) of the live rows of `holder` that carry a reference, across tenants.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn credential_references(
        &self,
        holder: ReferenceHolder,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<StoredReference>, DbErr> {
        let txn = self.begin().await?;
        let rows: Vec<(Uuid, String, Option<String>)> = match holder {
            ReferenceHolder::Integration => {
                let mut select = integration::Entity::find()
                    .select_only()
                    .columns([
                        integration::Column::Id,
                        integration::Column::TenantId,
                        integration::Column::AuthRefUri,
                    ])
                    .filter(integration::Column::DeletedAt.is_null())
                    .filter(integration::Column::AuthRefUri.is_not_null());
                if let Some(after) = after {
                    select = select.filter(integration::Column::Id.gt(after));
                }
                select
                    .order_by_asc(integration::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(&txn)
                    .await?
            }
            ReferenceHolder::Subscription => {
                let mut select = webhook_subscription::Entity::find()
                    .select_only()
                    .columns([
                        webhook_subscription::Column::Id,
                        webhook_subscription::Column::TenantId,
                        webhook_subscription::Column::SecretAuthRefUri,
                    ])
                    .filter(webhook_subscription::Column::DeletedAt.is_null());
                if let Some(after) = after {
                    select = select.filter(webhook_subscription::Column::Id.gt(after));
                }
                select
                    .order_by_asc(webhook_subscription::Column::Id)
                    .limit(limit)
                    .into_tuple::<(Uuid, String, String)>()
                    .all(&txn)
                    .await?
                    .into_iter()
                    .map(|(id, tenant, r)| (id, tenant, Some(r)))
                    .collect()
            }
        };
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, tenant_id, reference)| {
                Some(StoredReference {
                    holder,
                    id,
                    tenant_id,
                    reference: reference?,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewIntegration, testing};
    use crate::tenant::TenantId;

    #[tokio::test]
    async fn lists_every_tenants_references_in_pages() {
        let store = testing::store().await;
        for (tenant, name, reference) in [
            ("ta", "one", Some("authref://vault/secret/tenants/ta/x")),
            ("tb", "two", Some("authref://env/X")),
            ("tb", "three", None),
        ] {
            store
                .tenant(TenantId::new(tenant).unwrap())
                .integration_create(
                    "test",
                    NewIntegration {
                        provider_type: "inmemory".into(),
                        name: name.into(),
                        config: Default::default(),
                        auth_ref_uri: reference.map(str::to_owned),
                    },
                )
                .await
                .unwrap();
        }
        let system = store.system();
        let first = system
            .credential_references(ReferenceHolder::Integration, None, 1)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let rest = system
            .credential_references(ReferenceHolder::Integration, Some(first[0].id), 10)
            .await
            .unwrap();
        let mut all: Vec<_> = first.into_iter().chain(rest).collect();
        all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        assert_eq!(
            all.iter()
                .map(|r| (r.tenant_id.as_str(), r.reference.as_str()))
                .collect::<Vec<_>>(),
            [
                ("ta", "authref://vault/secret/tenants/ta/x"),
                ("tb", "authref://env/X")
            ]
        );
        assert!(
            system
                .credential_references(ReferenceHolder::Subscription, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

use super::*;
use crate::store::{AuditQuery, IntegrationQuery, testing};
use serde_json::json;

fn new(name: &str, t: &str) -> NewIntegration {
    NewIntegration {
        provider_type: t.into(),
        name: name.into(),
        config: json!({"behaviour": "healthy"})
            .as_object()
            .cloned()
            .unwrap(),
        auth_ref_uri: None,
    }
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

#[tokio::test]
async fn crud_round_trip_with_audit() {
    let store = testing::store().await;
    let (catalog, _h) = Catalog::start(store.clone(), 2, ChangeFeed::default())
        .await
        .unwrap();
    let a = tenant("acme");
    let created = catalog
        .create(&a, "alice", new("one", "inmemory"))
        .await
        .unwrap();
    assert_eq!((created.version, created.status.as_str()), (1, "unknown"));

    let read = store
        .tenant(a.clone())
        .integration_get(created.id)
        .await
        .unwrap();
    assert_eq!(read, created);

    let changes = IntegrationChanges {
        name: "renamed".into(),
        config: Default::default(),
        auth_ref_uri: Some("authref://env/X".into()),
        expected_version: Some(1),
    };
    let updated = catalog
        .update(&a, "bob", created.id, changes.clone())
        .await
        .unwrap();
    assert_eq!((updated.version, updated.name.as_str()), (2, "renamed"));

    // The same expected version again is now stale.
    let stale = catalog.update(&a, "bob", created.id, changes).await;
    assert!(matches!(
        stale,
        Err(CatalogError::VersionMismatch {
            expected: 1,
            current: 2
        })
    ));

    catalog.delete(&a, "carol", created.id, None).await.unwrap();
    let gone = store.tenant(a.clone()).integration_get(created.id).await;
    assert!(matches!(gone, Err(CatalogError::NotFound { .. })));

    let trail = store
        .tenant(a)
        .audit_list(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = trail
        .items
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("carol", "integration.delete"),
            ("bob", "integration.update"),
            ("alice", "integration.create")
        ]
    );
    assert_eq!(trail.items[1].details["before"]["name"], "one");
    assert_eq!(trail.items[1].details["after"]["name"], "renamed");
    catalog.stop();
}

#[tokio::test]
async fn names_are_unique_per_tenant_among_live_rows() {
    let store = testing::store().await;
    let (catalog, _h) = Catalog::start(store.clone(), 2, ChangeFeed::default())
        .await
        .unwrap();
    let (a, b) = (tenant("a"), tenant("b"));
    let first = catalog
        .create(&a, "x", new("dup", "inmemory"))
        .await
        .unwrap();
    let clash = catalog.create(&a, "x", new("dup", "inmemory")).await;
    assert!(matches!(
        clash,
        Err(CatalogError::Conflict { field: "name", .. })
    ));
    // Another tenant may use the name, and so may the same tenant after a delete.
    catalog
        .create(&b, "x", new("dup", "inmemory"))
        .await
        .unwrap();
    catalog.delete(&a, "x", first.id, Some(1)).await.unwrap();
    catalog
        .create(&a, "x", new("dup", "inmemory"))
        .await
        .unwrap();
    catalog.stop();
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let store = testing::store().await;
    let (catalog, _h) = Catalog::start(store.clone(), 2, ChangeFeed::default())
        .await
        .unwrap();
    let (a, b) = (tenant("a"), tenant("b"));
    let mine = catalog
        .create(&a, "x", new("mine", "inmemory"))
        .await
        .unwrap();
    let other = store.tenant(b.clone());
    assert!(matches!(
        other.integration_get(mine.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    let listed = other
        .integration_list(&IntegrationQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    let changes = IntegrationChanges {
        name: "stolen".into(),
        config: Default::default(),
        auth_ref_uri: None,
        expected_version: None,
    };
    assert!(matches!(
        catalog.update(&b, "y", mine.id, changes).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(matches!(
        catalog.delete(&b, "y", mine.id, None).await,
        Err(CatalogError::NotFound { .. })
    ));
    let trail = other
        .audit_list(&AuditQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(trail.items.is_empty());
    catalog.stop();
}

#[tokio::test]
async fn pages_are_stable_and_filtered_by_type() {
    let store = testing::store().await;
    let (catalog, _h) = Catalog::start(store.clone(), 2, ChangeFeed::default())
        .await
        .unwrap();
    let a = tenant("a");
    for i in 0..7 {
        let t = if i % 2 == 0 { "inmemory" } else { "gitlab" };
        catalog
            .create(&a, "x", new(&format!("n{i}"), t))
            .await
            .unwrap();
    }
    let reader = store.tenant(a);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = reader
            .integration_list(&IntegrationQuery {
                after,
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|m| m.name.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
    let gitlab = reader
        .integration_list(&IntegrationQuery {
            provider_type: Some("gitlab".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(gitlab.items.len(), 3);
    let unknown = reader
        .integration_list(&IntegrationQuery {
            status: Some("unknown".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unknown.items.len(), 7);
    let unhealthy = reader
        .integration_list(&IntegrationQuery {
            status: Some("unhealthy".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(unhealthy.items.is_empty());
    assert!(gitlab.next.is_none());
    catalog.stop();
}

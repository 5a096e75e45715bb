//! The baseline of the catalog-list benchmark: a bare poem handler that runs the same list query
//! as the daemon (built by the same sea-orm code) straight on the pool, with no actors, no
//! authentication and no tenancy layer (no transaction, no row-level-security setting), and
//! returns the same JSON.
//!
//! Usage: `bare-list DATABASE_URL LISTEN_ADDR`; serves `GET /list/{tenant}?type=X`.

use anyhow::{Context, bail};
use entity::integration::{Column, Entity};
use poem::web::{Data, Json, Path, Query};
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener};
use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::{Value, json};

/// The daemon's allocator, so the comparison is of the code, not of the allocators.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(serde::Deserialize)]
struct Params {
    #[serde(rename = "type")]
    provider_type: Option<String>,
}

#[handler]
async fn list(
    db: Data<&DatabaseConnection>,
    Path(tenant): Path<String>,
    Query(params): Query<Params>,
) -> poem::Result<Json<Value>> {
    let mut select = Entity::find()
        .filter(Column::TenantId.eq(tenant))
        .filter(Column::DeletedAt.is_null());
    if let Some(t) = params.provider_type {
        select = select.filter(Column::ProviderType.eq(t));
    }
    let rows = select
        .order_by_asc(Column::Id)
        .limit(51)
        .all(*db)
        .await
        .map_err(poem::error::InternalServerError)?;
    let items: Vec<Value> = rows
        .into_iter()
        .take(50)
        .map(|m| {
            json!({
                "id": m.id, "tenantId": m.tenant_id, "type": m.provider_type, "name": m.name,
                "config": m.config_json, "authRef": m.auth_ref_uri, "status": m.status,
                "statusReason": m.status_reason, "lastCheckedAt": m.last_checked_at,
                "version": m.version, "createdAt": m.created_at, "updatedAt": m.updated_at,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items, "nextCursor": null })))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, listen] = args.as_slice() else {
        bail!("usage: bare-list DATABASE_URL LISTEN_ADDR");
    };
    let mut options = ConnectOptions::new(url.clone());
    options.max_connections(16).sqlx_logging(false);
    let db = Database::connect(options).await.context("connect")?;
    let app = Route::new().at("/list/:tenant", get(list)).data(db);
    Server::new(TcpListener::bind(listen.as_str()))
        .run(app)
        .await?;
    Ok(())
}

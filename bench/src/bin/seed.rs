//! Seeds a migrated catalog database with `COUNT` integrations spread over `TENANTS` tenants
//! (`t000`, `t001`, …) and the five built-in provider types, in multi-row INSERTs.
//!
//! Usage: `seed DATABASE_URL COUNT TENANTS [TYPE CONFIG_JSON]` (connect as a role that bypasses
//! row-level security, such as a superuser, to seed every tenant at once). With TYPE and
//! CONFIG_JSON every integration gets that type and configuration.

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database, Statement};

const TYPES: [&str; 5] = ["github_app", "gitlab", "harbor", "oci_registry", "inmemory"];
const BATCH: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, count, tenants, fixed) = match args.as_slice() {
        [_, url, count, tenants] => (url, count, tenants, None),
        [_, url, count, tenants, kind, config] => {
            (url, count, tenants, Some((kind.clone(), config.clone())))
        }
        _ => bail!("usage: seed DATABASE_URL COUNT TENANTS [TYPE CONFIG_JSON]"),
    };
    let count: usize = count.parse().context("COUNT")?;
    let tenants: usize = tenants.parse().context("TENANTS")?;
    let db = Database::connect(url.as_str()).await.context("connect")?;
    let backend = db.get_database_backend();
    let now = chrono::Utc::now().to_rfc3339();
    let mut done = 0;
    while done < count {
        let n = BATCH.min(count - done);
        let mut sql = String::from(
            "INSERT INTO integrations (id, tenant_id, type, name, config_json, auth_ref_uri, \
             status, version, created_at, updated_at) VALUES ",
        );
        for i in done..done + n {
            if i > done {
                sql.push(',');
            }
            let tenant = i % tenants;
            let (kind, config, auth_ref) = match &fixed {
                Some((kind, config)) => {
                    (kind.clone(), config.replace('\'', "''"), "NULL".to_owned())
                }
                None => {
                    let kind = TYPES[(i / tenants) % TYPES.len()];
                    (
                        kind.to_owned(),
                        format!("{{\"baseUrl\": \"https://provider-{i}.example.com\"}}"),
                        format!(
                            "'authref://vault/secret/tenants/t{tenant:03}/ci/{kind}/{i}#token'"
                        ),
                    )
                }
            };
            sql.push_str(&format!(
                "('{}', 't{tenant:03}', '{kind}', 'integration-{i}', '{config}', {auth_ref}, \
                 'unknown', 1, '{now}', '{now}')",
                uuid::Uuid::now_v7()
            ));
        }
        db.execute_raw(Statement::from_string(backend, sql))
            .await
            .context("insert")?;
        done += n;
    }
    println!("seeded {count} integrations over {tenants} tenants");
    Ok(())
}

//! Connecting to the database and migrating it.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement,
};

/// Connection pool settings.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool on `url` (`sqlite://…` or `postgres://…`).
///
/// SQLite runs in WAL mode with a busy timeout, so readers never block the writer.
///
/// # Errors
/// The driver's error when the database cannot be reached or opened.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.max_connections)
        .min_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .sqlx_logging(false);
    if url.contains(":memory:") {
        // An in-memory database lives as long as its connection: never recycle it (a paused
        // test clock would otherwise age it out and lose the database).
        let forever = Duration::from_secs(100 * 365 * 86_400);
        options.idle_timeout(forever).max_lifetime(forever);
    }
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA busy_timeout = 5000",
            "PRAGMA foreign_keys = ON",
        ] {
            db.execute_unprepared(pragma).await?;
        }
    }
    Ok(db)
}

/// The session-level advisory lock that lets one process at a time migrate a PostgreSQL
/// database ("STELLAMIG").
const MIGRATION_LOCK: i64 = 0x5354_454C_4C41_4D49;

/// Applies every pending migration.
///
/// On PostgreSQL several processes may start on one database at once (the replicas of a
/// cluster, or an upgrade rolled out to all of them): each first takes an advisory lock on a
/// connection of its own, so one migrates while the others wait, then find nothing left to do.
///
/// # Errors
/// The failing migration's error.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    use sea_orm::sqlx::Connection as _;
    let options = db.get_postgres_connection_pool().connect_options();
    let mut lock = sea_orm::sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| DbErr::Custom(format!("connecting to take the migration lock: {e}")))?;
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut lock)
        .await
        .map_err(|e| DbErr::Custom(format!("taking the migration lock: {e}")))?;
    let migrated = Migrator::up(db, None).await;
    // Closing the session releases the lock too; unlocking first says so at once.
    let _ = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut lock)
        .await;
    let _ = lock.close().await;
    migrated
}

/// Whether every known migration has been applied.
///
/// # Errors
/// When the database cannot be queried.
pub async fn is_migrated(db: &DatabaseConnection) -> Result<bool, DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.is_empty())
}

/// On PostgreSQL, whether the connected role bypasses row-level security (a superuser or a
/// role with `BYPASSRLS`), in which case the policies protect nothing.
///
/// # Errors
/// When the database cannot be queried.
pub async fn role_bypasses_rls(db: &DatabaseConnection) -> Result<bool, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT rolsuper OR rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<bool>("", "bypass")?,
        None => false,
    })
}

/// Databases for tests: in-memory SQLite by default, a fresh PostgreSQL database owned by an
/// unprivileged role (so row-level security applies) when `STELLA_TEST_DATABASE=postgres`.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// `sqlite` (default) or `postgres`.
    pub const BACKEND_ENV: &str = "STELLA_TEST_DATABASE";
    /// Superuser URL used to create test databases.
    pub const PG_ADMIN_URL_ENV: &str = "STELLA_TEST_PG_ADMIN_URL";
    const PG_ADMIN_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    /// The role test databases belong to: no superuser, no BYPASSRLS.
    pub const PG_APP_ROLE: &str = "stella_app";

    /// Whether tests run against PostgreSQL.
    pub fn use_postgres() -> bool {
        std::env::var(BACKEND_ENV).is_ok_and(|v| v == "postgres")
    }

    /// A URL for a fresh, empty database of the selected backend. For SQLite the file lives in
    /// `dir`.
    ///
    /// # Panics
    /// When PostgreSQL is selected but cannot be reached: a test cannot run without it.
    pub async fn fresh_url(dir: &std::path::Path) -> String {
        if !use_postgres() {
            return format!("sqlite://{}?mode=rwc", dir.join("catalog.db").display());
        }
        fresh_postgres_url().await
    }

    /// A URL for a fresh, empty PostgreSQL database owned by the unprivileged application
    /// role, whichever backend the other tests use (for what only PostgreSQL does, such as
    /// clusters).
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached.
    pub async fn fresh_postgres_url() -> String {
        let admin_url =
            std::env::var(PG_ADMIN_URL_ENV).unwrap_or_else(|_| PG_ADMIN_URL_DEFAULT.into());
        let admin = Database::connect(admin_url.as_str())
            .await
            .expect("connect to PostgreSQL as admin");
        admin
            .execute_unprepared(&format!(
                "DO $$ BEGIN CREATE ROLE {PG_APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ))
            .await
            .expect("create the application role");
        let name = format!("stella_test_{}", uuid_hex());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name} OWNER {PG_APP_ROLE}"))
            .await
            .expect("create a test database");
        admin.close().await.ok();
        let mut url = url_of(&admin_url);
        url.set_username(PG_APP_ROLE).expect("set role");
        url.set_password(None).expect("clear password");
        url.set_path(&name);
        url.to_string()
    }

    fn url_of(s: &str) -> url::Url {
        url::Url::parse(s).expect("a valid admin URL")
    }

    fn uuid_hex() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// A migrated, fresh PostgreSQL database, whichever backend the other tests use.
    pub async fn postgres_database() -> DatabaseConnection {
        let db = connect(&fresh_postgres_url().await, &PoolSettings::default())
            .await
            .expect("connect");
        migrate(&db).await.expect("migrate");
        db
    }

    /// A migrated database for unit tests.
    pub async fn database() -> DatabaseConnection {
        let db = if use_postgres() {
            let url = fresh_url(std::path::Path::new(".")).await;
            connect(&url, &PoolSettings::default())
                .await
                .expect("connect")
        } else {
            // One connection: each SQLite in-memory connection is its own database.
            let settings = PoolSettings {
                max_connections: 1,
                ..PoolSettings::default()
            };
            connect("sqlite::memory:", &settings)
                .await
                .expect("connect")
        };
        migrate(&db).await.expect("migrate");
        db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas starting together on a fresh PostgreSQL database: every one of them migrates
    /// (or finds the work done) without tripping over another's half-made schema.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_migrating_one_database_at_once_all_succeed() {
        let url = testing::fresh_postgres_url().await;
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let url = url.clone();
            replicas.push(tokio::spawn(async move {
                let db = connect(&url, &PoolSettings::default()).await?;
                migrate(&db).await?;
                is_migrated(&db).await
            }));
        }
        for replica in replicas {
            assert!(replica.await.unwrap().expect("a replica failed to migrate"));
        }
    }
}

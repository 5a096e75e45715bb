//! Names shared by the row-level-security policies and the code that sets them.

/// Setting that names the tenant of the current transaction (`SET LOCAL`).
pub const TENANT_SETTING: &str = "stella.tenant_id";
/// Setting that lets a system task (such as the health engine's start-up scan) see every tenant.
pub const ALL_TENANTS_SETTING: &str = "stella.all_tenants";
/// The tenant tables of the first schema, given their policies by migration 6; tables added
/// later enable their own.
pub const TENANT_TABLES: [&str; 3] = ["integrations", "health_checks", "audit_logs"];

//! The TLS certificate of each webhook subscription's target, as its deliveries saw it.
//!
//! - `webhook_subscriptions.target_certificate_expires_at`: the `notAfter` of the certificate
//!   the target presented on its latest delivery connection (null: not seen yet, or a plain
//!   `http` target).
//! - `webhook_subscriptions.target_certificate_warned_for`: the `notAfter` of the certificate
//!   already announced as expiring (`dev.stellaops.integration.subscription.certificate_expiring`),
//!   so each certificate crossing the warning horizon is announced once, across restarts and
//!   leader changes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            timestamp_with_time_zone_null(WebhookSubscriptions::TargetCertificateExpiresAt),
            timestamp_with_time_zone_null(WebhookSubscriptions::TargetCertificateWarnedFor),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(WebhookSubscriptions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite drops one column at a time.
        for column in [
            WebhookSubscriptions::TargetCertificateWarnedFor,
            WebhookSubscriptions::TargetCertificateExpiresAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(WebhookSubscriptions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookSubscriptions {
    Table,
    TargetCertificateExpiresAt,
    TargetCertificateWarnedFor,
}

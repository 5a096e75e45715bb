//! Batched webhook delivery and a smaller queue index.
//!
//! - `webhook_subscriptions.batch_max_events` / `batch_max_delay_ms`: a subscription that sets
//!   them receives its events in CloudEvents JSON batches (`application/cloudevents-batch+json`)
//!   of at most that many events, sent at the latest that long after the oldest is due; null
//!   (every existing row) keeps one event per POST.
//! - The delivery worker keeps the heads of the queue in memory and reads only new rows, by
//!   id; what it still asks the database per (subscription, integration) — the oldest pending
//!   rows of one key or of one subscription — is served by a partial index on pending rows.
//!   It replaces the index over every row's status, which grew with the delivered history.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const PENDING_INDEX: &str = "CREATE INDEX IF NOT EXISTS ix_webhook_deliveries_pending \
     ON webhook_deliveries (subscription_id, ordering_key, id) WHERE status = 'pending'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            integer_null(WebhookSubscriptions::BatchMaxEvents),
            integer_null(WebhookSubscriptions::BatchMaxDelayMs),
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
        let db = manager.get_connection();
        db.execute_unprepared(PENDING_INDEX).await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_alert_deliveries_queue")
                    .table(WebhookDeliveries::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_deliveries_queue")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::SubscriptionId)
                    .col(WebhookDeliveries::OrderingKey)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_webhook_deliveries_pending")
                    .table(WebhookDeliveries::Table)
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite drops one column at a time.
        for column in [
            WebhookSubscriptions::BatchMaxDelayMs,
            WebhookSubscriptions::BatchMaxEvents,
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
    BatchMaxEvents,
    BatchMaxDelayMs,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Status,
    SubscriptionId,
    OrderingKey,
    Id,
}

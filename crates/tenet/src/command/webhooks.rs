//! `tenet webhooks create|list|disable|enable`: a tenant's webhook subscriptions, in
//! a transaction of that tenant (row-level security scopes every statement).

use std::process::ExitCode;

use platform::relay::admin::{self, NewSubscription, Subscription, SubscriptionError};

use super::jobs::timestamp;
use super::tenant_tx;
use crate::cli::{Global, WebhooksCommand};
use crate::output::{say, tell};

pub async fn run(global: &Global, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |_owner, app| match command {
        WebhooksCommand::Create {
            tenant,
            url,
            events,
            allow_private_host,
        } => {
            if let Err(refusal) = api::egress::check_webhook_url(&url, allow_private_host) {
                tell(format!("--url is refused: {refusal}"));
                return Ok(ExitCode::FAILURE);
            }
            let mut tx = tenant_tx(app, tenant).await?;
            let created = admin::create_subscription(
                &mut tx,
                NewSubscription {
                    url,
                    event_types: events,
                },
            )
            .await;
            match created {
                Ok(created) => {
                    tx.commit().await?;
                    say(format!("subscription {}", created.subscription.id));
                    say(format!("secret {}", created.secret));
                    tell("the secret is shown this once: give it to the receiver to verify `Tenet-Signature`");
                    Ok(ExitCode::SUCCESS)
                }
                Err(SubscriptionError::Unexpected(err)) => Err(err.into()),
                Err(err) => {
                    tell(err);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        WebhooksCommand::List { tenant } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let subscriptions = admin::list_subscriptions(&mut tx).await?;
            tx.rollback().await?;
            say(format!(
                "{:<36}  {:<8}  {:>8}  {:<25}  {:<40}  events",
                "id", "state", "failures", "created", "url"
            ));
            for subscription in &subscriptions {
                print(subscription);
            }
            say(format!("{} subscription(s)", subscriptions.len()));
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::Disable { tenant, id } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let done = admin::disable_subscription(&mut tx, id).await?;
            tx.commit().await?;
            changed(done, id, "disabled")
        }
        WebhooksCommand::Enable { tenant, id } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let done = admin::enable_subscription(&mut tx, id).await?;
            tx.commit().await?;
            changed(done, id, "enabled")
        }
    })
    .await
}

fn print(subscription: &Subscription) {
    say(format!(
        "{:<36}  {:<8}  {:>8}  {:<25}  {:<40}  {}",
        subscription.id,
        subscription.state,
        subscription.consecutive_failures,
        timestamp(subscription.created_at),
        subscription.url,
        if subscription.event_types.is_empty() {
            "*".to_owned()
        } else {
            subscription.event_types.join(",")
        }
    ));
}

fn changed(done: bool, id: uuid::Uuid, what: &str) -> anyhow::Result<ExitCode> {
    if done {
        say(format!("subscription {id} {what}"));
        Ok(ExitCode::SUCCESS)
    } else {
        say(format!("no subscription {id} of this tenant"));
        Ok(ExitCode::FAILURE)
    }
}

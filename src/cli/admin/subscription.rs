//! `hookd subscription ...`: list, create, show, and the day-to-day actions on one
//! subscription (activate, deactivate, delete, read or rotate its signing secret,
//! replay a time range, send a test event).

use clap::{Args, Subcommand};
use serde_json::json;

use super::super::CliError;
use super::super::output::{hint, print};
use super::{Connection, Page, render};

#[derive(Debug, Args)]
pub struct SubscriptionArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: SubscriptionAction,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionAction {
    /// List the subscriptions.
    List(Page),
    /// Subscribe an HTTPS endpoint to event types.
    Create {
        /// The endpoint's HTTPS URL.
        #[arg(long)]
        endpoint: String,
        /// An event type or pattern (repeat for several): `*`, `family.*` or exact.
        #[arg(long = "event-type", required = true)]
        event_types: Vec<String>,
        /// The entity it belongs to [default: the root, which receives every event].
        #[arg(long, value_name = "ENTITY_ID")]
        entity: Option<String>,
        /// A description for people to read.
        #[arg(long)]
        description: Option<String>,
    },
    /// One subscription.
    Show {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Set the status to ACTIVE: new events fan out to it again and its waiting
    /// deliveries go back in the queue.
    Activate {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Set the status to DEACTIVATED (its pending deliveries wait).
    Deactivate {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Delete it; its unfinished deliveries become CANCELLED.
    Delete {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Show the signing secret receivers verify deliveries with.
    Secret {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Make a new signing secret; the old one keeps signing beside it for
    /// delivery.rotation_overlap.
    Rotate {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Deliver again the events of a time range to this subscription.
    Replay {
        /// The subscription's id (sub_...).
        id: String,
        /// Start of the range (RFC 3339, e.g. 2026-11-23T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: String,
        /// End of the range (RFC 3339) [default: now].
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only the events whose delivery to it ended FAILED.
        #[arg(long)]
        only_failed: bool,
    },
    /// Send it a hookd.ping event (to this subscription only).
    Test {
        /// The subscription's id (sub_...).
        id: String,
    },
}

const SUBSCRIPTION_COLUMNS: &[&str] = &["id", "entityId", "status", "eventTypes", "endpointUrl"];

pub fn subscription(args: &SubscriptionArgs) -> Result<(), CliError> {
    use SubscriptionAction as A;
    let connection = &args.connection;
    let json = connection.json;
    let path = |id: &str, rest: &str| format!("/v1/subscriptions/{id}{rest}");
    let status = |id: &str, status: &str| {
        let body = json!({"status": status});
        let answer = connection
            .api()?
            .call("PATCH", &path(id, ""), Some(&body))?;
        render::show(json, &answer, SUBSCRIPTION_COLUMNS)
    };
    match &args.action {
        A::List(page) => page.show(connection, "/v1/subscriptions", &[], SUBSCRIPTION_COLUMNS),
        A::Create {
            endpoint,
            event_types,
            entity,
            description,
        } => {
            let body = json!({"endpointUrl": endpoint, "eventTypes": event_types, "entityId": entity, "description": description});
            let answer = connection
                .api()?
                .call("POST", "/v1/subscriptions", Some(&body))?;
            let columns = ["id", "status", "endpointUrl", "signingSecret"];
            render::show(json, &answer, &columns)
        }
        A::Show { id } => {
            let answer = connection.api()?.call("GET", &path(id, ""), None)?;
            render::show(json, &answer, SUBSCRIPTION_COLUMNS)
        }
        A::Activate { id } => status(id, "ACTIVE"),
        A::Deactivate { id } => status(id, "DEACTIVATED"),
        A::Delete { id } => {
            connection.api()?.call("DELETE", &path(id, ""), None)?;
            print(format_args!("deleted {id}\n"))
        }
        A::Secret { id } => {
            let answer = connection.api()?.call("GET", &path(id, "/secret"), None)?;
            render::show(json, &answer, &["signingSecret"])
        }
        A::Rotate { id } => {
            let answer = connection
                .api()?
                .call("POST", &path(id, "/secret/rotate"), None)?;
            render::show(json, &answer, &["signingSecret"])?;
            if !json {
                hint("the previous secret keeps signing beside it for delivery.rotation_overlap");
            }
            Ok(())
        }
        A::Replay {
            id,
            since,
            until,
            only_failed,
        } => {
            let mut body = json!({"since": since, "onlyFailed": only_failed});
            if let Some(until) = until {
                body["until"] = json!(until);
            }
            let answer = connection
                .api()?
                .call("POST", &path(id, "/replay"), Some(&body))?;
            // `nextSince`: more matched than one request queues; replay again from there.
            render::show(json, &answer, &["queued", "nextSince"])
        }
        A::Test { id } => {
            let answer = connection.api()?.call("POST", &path(id, "/test"), None)?;
            render::show(json, &answer, super::event::DELIVERY_COLUMNS)
        }
    }
}

//! `hookd event ...` (send one, show one with its deliveries) and `hookd delivery ...`
//! (a subscription's deliveries, one delivery with its attempts, a manual retry).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::super::CliError;
use super::super::output::print;
use super::{Connection, Page, render};

#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: EventAction,
}

#[derive(Debug, Subcommand)]
pub enum EventAction {
    /// Post an event.
    Send {
        /// The event type, e.g. v2.export-job.created.
        #[arg(long = "type")]
        event_type: String,
        /// The event's data as a JSON object.
        #[arg(long, default_value = "{}")]
        data: String,
        /// The entity it concerns [default: the root].
        #[arg(long, value_name = "ENTITY_ID")]
        entity: Option<String>,
    },
    /// An event, then its deliveries.
    Show {
        /// The event's id (evt_...).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct DeliveryArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: DeliveryAction,
}

#[derive(Debug, Subcommand)]
pub enum DeliveryAction {
    /// The deliveries of one subscription, newest first.
    List {
        /// The subscription's id (sub_...).
        #[arg(long, value_name = "SUB_ID")]
        subscription: String,
        /// Only deliveries in this state.
        #[arg(long, ignore_case = true, value_parser = ["PENDING", "RETRYING", "SUCCEEDED", "FAILED", "CANCELLED"])]
        state: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// A delivery and its attempts.
    Show {
        /// The delivery's id (dlv_...).
        id: String,
    },
    /// Attempt it once more, now.
    Retry {
        /// The delivery's id (dlv_...).
        id: String,
    },
}

pub fn event(args: &EventArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match &args.action {
        EventAction::Send {
            event_type,
            data,
            entity,
        } => {
            let data: Value = serde_json::from_str(data)
                .map_err(|e| CliError::Usage(format!("--data is not JSON: {e}")))?;
            let body = json!({"eventType": event_type, "data": data, "entityId": entity});
            let answer = connection.api()?.call("POST", "/v1/events", Some(&body))?;
            show_event(connection.json, &answer)
        }
        EventAction::Show { id } => {
            let api = connection.api()?;
            let answer = api.call("GET", &format!("/v1/events/{id}"), None)?;
            // Every page: an event has at most one delivery per subscription.
            let path = format!("/v1/events/{id}/deliveries");
            let mut deliveries = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec![("limit", "500")];
                query.extend(cursor.as_deref().map(|c| ("cursor", c)));
                let page = api.get(&path, &query)?;
                deliveries.extend(page["data"].as_array().cloned().unwrap_or_default());
                match page["nextCursor"].as_str() {
                    Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                    _ => break,
                }
            }
            let deliveries = json!({"data": deliveries});
            if connection.json {
                let both = json!({"data": answer["data"], "deliveries": deliveries["data"]});
                return render::print_json(&both);
            }
            show_event(false, &answer)?;
            print("\n")?;
            let mut columns = vec!["id", "subscriptionId"];
            columns.extend_from_slice(&DELIVERY_COLUMNS[1..]);
            render::show(false, &deliveries, &columns)
        }
    }
}

/// An event answer: as it came with `--json`, else one row.
fn show_event(json: bool, answer: &Value) -> Result<(), CliError> {
    render::show(json, answer, render::EVENT_COLUMNS)
}

pub const DELIVERY_COLUMNS: &[&str] = &[
    "id",
    "state",
    "attempts",
    "lastStatus",
    "nextAttemptAt",
    "lastError",
];

pub fn delivery(args: &DeliveryArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match &args.action {
        DeliveryAction::List {
            subscription,
            state,
            page,
        } => {
            let state = state.as_deref().map(str::to_ascii_uppercase);
            let filters: Vec<(&str, &str)> =
                state.as_deref().map(|s| ("state", s)).into_iter().collect();
            let path = format!("/v1/subscriptions/{subscription}/deliveries");
            let mut columns = DELIVERY_COLUMNS.to_vec();
            columns.insert(1, "eventId");
            page.show(connection, &path, &filters, &columns)
        }
        DeliveryAction::Show { id } => {
            let api = connection.api()?;
            let answer = api.call("GET", &format!("/v1/deliveries/{id}"), None)?;
            let attempts = api.get(
                &format!("/v1/deliveries/{id}/attempts"),
                &[("limit", "500")],
            )?;
            if connection.json {
                let both = json!({"data": answer["data"], "attempts": attempts["data"]});
                return render::print_json(&both);
            }
            render::show(false, &answer, DELIVERY_COLUMNS)?;
            print("\n")?;
            let columns = ["attemptedAt", "statusCode", "durationMs", "error"];
            render::show(false, &attempts, &columns)
        }
        DeliveryAction::Retry { id } => {
            let answer =
                connection
                    .api()?
                    .call("POST", &format!("/v1/deliveries/{id}/retry"), None)?;
            render::show(connection.json, &answer, DELIVERY_COLUMNS)
        }
    }
}

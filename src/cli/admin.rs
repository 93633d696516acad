//! Admin commands that call a running hookd with the admin token: entities, API keys,
//! subscriptions, events and deliveries. Output is a readable table, or the API's
//! JSON with `--json`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::client::Api;
use crate::config::{self, Config};

#[derive(Debug, Args)]
pub struct Connection {
    /// Configuration file (the admin token, the address and the CA to trust).
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH, global = true)]
    pub config: PathBuf,
    /// API base URL [default: from server.listen].
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
    /// CA certificate (PEM) to trust instead of the ones the config names.
    #[arg(long, value_name = "PATH", global = true)]
    pub cacert: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EntityArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: EntityAction,
}

#[derive(Debug, Subcommand)]
pub enum EntityAction {
    /// Create an entity (an organisation, or a company below one).
    Create {
        #[arg(long)]
        name: String,
        /// Choose the id (1-64 of A-Z a-z 0-9 _ -); hookd generates one otherwise.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        parent: Option<String>,
    },
    List,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create an API key; the key is shown once.
    Create {
        #[arg(long)]
        entity: String,
        #[arg(long)]
        name: String,
        /// A scope (repeat for several): events:write, subscriptions:read, ...
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    List,
    /// Revoke a key; effective at once.
    Revoke {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SubscriptionArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: SubscriptionAction,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionAction {
    List,
    /// Subscribe an HTTPS endpoint to event types.
    Create {
        /// The endpoint's HTTPS URL.
        #[arg(long)]
        endpoint: String,
        /// An event type or pattern (repeat for several): `*`, `family.*` or exact.
        #[arg(long = "event-type", required = true)]
        event_types: Vec<String>,
        #[arg(long)]
        entity: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Show {
        id: String,
    },
    /// Set the status to DEACTIVATED (its pending deliveries wait).
    Deactivate {
        id: String,
    },
}

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
        #[arg(long = "type")]
        event_type: String,
        /// The event's data as a JSON object.
        #[arg(long, default_value = "{}")]
        data: String,
        #[arg(long)]
        entity: Option<String>,
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
    /// A delivery and its attempts.
    Show { id: String },
    /// Attempt it once more, now.
    Retry { id: String },
}

fn api(connection: &Connection) -> Result<Api, CliError> {
    let config = Config::load(&connection.config)?;
    Api::new(
        &config,
        connection.url.as_deref(),
        connection.cacert.as_deref(),
    )
}

/// What a command prints: the JSON, or a table of `columns` (JSON field names).
fn show(connection: &Connection, value: &Value, columns: &[&str]) {
    if connection.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    let rows: Vec<&Value> = match &value["data"] {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    print!("{}", table(columns, &rows));
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart, headed by the field names.
pub fn table(columns: &[&str], rows: &[&Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_string()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

pub fn entity(args: &EntityArgs) -> Result<(), CliError> {
    let api = api(&args.connection)?;
    let answer = match &args.action {
        EntityAction::Create { name, id, parent } => api.call(
            "POST",
            "/v1/admin/entities",
            Some(&json!({"name": name, "id": id, "parentId": parent})),
        )?,
        EntityAction::List => api.call("GET", "/v1/admin/entities", None)?,
    };
    show(
        &args.connection,
        &answer,
        &["id", "name", "parentId", "createdAt"],
    );
    Ok(())
}

pub fn key(args: &KeyArgs) -> Result<(), CliError> {
    let api = api(&args.connection)?;
    match &args.action {
        KeyAction::Create {
            entity,
            name,
            scopes,
        } => {
            let body = json!({"entityId": entity, "name": name, "scopes": scopes});
            let answer = api.call("POST", "/v1/admin/api-keys", Some(&body))?;
            show(
                &args.connection,
                &answer,
                &["id", "entityId", "name", "scopes", "key"],
            );
            if !args.connection.json {
                println!("\nthe key is shown only now: store it safely");
            }
        }
        KeyAction::List => {
            let answer = api.call("GET", "/v1/admin/api-keys", None)?;
            show(
                &args.connection,
                &answer,
                &["id", "entityId", "name", "scopes", "createdAt"],
            );
        }
        KeyAction::Revoke { id } => {
            api.call("DELETE", &format!("/v1/admin/api-keys/{id}"), None)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

const SUBSCRIPTION_COLUMNS: &[&str] = &["id", "entityId", "status", "eventTypes", "endpointUrl"];

pub fn subscription(args: &SubscriptionArgs) -> Result<(), CliError> {
    let api = api(&args.connection)?;
    let answer = match &args.action {
        SubscriptionAction::List => api.call("GET", "/v1/subscriptions?limit=500", None)?,
        SubscriptionAction::Create {
            endpoint,
            event_types,
            entity,
            description,
        } => {
            let body = json!({"endpointUrl": endpoint, "eventTypes": event_types, "entityId": entity, "description": description});
            let answer = api.call("POST", "/v1/subscriptions", Some(&body))?;
            show(
                &args.connection,
                &answer,
                &["id", "status", "endpointUrl", "signingSecret"],
            );
            return Ok(());
        }
        SubscriptionAction::Show { id } => {
            api.call("GET", &format!("/v1/subscriptions/{id}"), None)?
        }
        SubscriptionAction::Deactivate { id } => api.call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"status": "DEACTIVATED"})),
        )?,
    };
    show(&args.connection, &answer, SUBSCRIPTION_COLUMNS);
    Ok(())
}

pub fn event(args: &EventArgs) -> Result<(), CliError> {
    let api = api(&args.connection)?;
    let EventAction::Send {
        event_type,
        data,
        entity,
    } = &args.action;
    let data: Value = serde_json::from_str(data)
        .map_err(|e| CliError::Usage(format!("--data is not JSON: {e}")))?;
    let body = json!({"eventType": event_type, "data": data, "entityId": entity});
    let answer = api.call("POST", "/v1/events", Some(&body))?;
    show(
        &args.connection,
        &answer,
        &[
            "eventId",
            "eventType",
            "entityId",
            "deliveries",
            "createdAt",
        ],
    );
    Ok(())
}

const DELIVERY_COLUMNS: &[&str] = &[
    "id",
    "state",
    "attempts",
    "lastStatus",
    "nextAttemptAt",
    "lastError",
];

pub fn delivery(args: &DeliveryArgs) -> Result<(), CliError> {
    let api = api(&args.connection)?;
    match &args.action {
        DeliveryAction::Show { id } => {
            let answer = api.call("GET", &format!("/v1/deliveries/{id}"), None)?;
            let attempts = api.call("GET", &format!("/v1/deliveries/{id}/attempts"), None)?;
            if args.connection.json {
                let both = json!({"data": answer["data"], "attempts": attempts["data"]});
                println!(
                    "{}",
                    serde_json::to_string_pretty(&both).unwrap_or_default()
                );
                return Ok(());
            }
            show(&args.connection, &answer, DELIVERY_COLUMNS);
            println!();
            show(
                &args.connection,
                &attempts,
                &["attemptedAt", "statusCode", "durationMs", "error"],
            );
        }
        DeliveryAction::Retry { id } => {
            let answer = api.call("POST", &format!("/v1/deliveries/{id}/retry"), None)?;
            show(&args.connection, &answer, DELIVERY_COLUMNS);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_show_absent_values_as_dashes() {
        let rows = [
            json!({"id": "a", "name": "Acme", "n": 1}),
            json!({"id": "bbbb", "name": null, "n": [1, 2]}),
        ];
        let rows: Vec<&Value> = rows.iter().collect();
        assert_eq!(
            table(&["id", "name", "n"], &rows),
            "id    name  n\na     Acme  1\nbbbb  -     1,2\n"
        );
    }
}

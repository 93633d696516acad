//! Admin commands that call a running hookd with the admin token: entities and API keys
//! here, subscriptions in `subscription.rs`, events and deliveries in `event.rs`. Each
//! prints a readable table, or the API's JSON with `--json` (`render.rs`). Lists show
//! one page (`--limit`, `--cursor`) and say on stderr where the next one starts.

mod event;
mod render;
mod subscription;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::CliError;
use super::client::Api;
use super::locate::{CONFIG_HELP, config_path};
use super::output::print;
use crate::config::Config;

pub use event::{DeliveryAction, DeliveryArgs, EventAction, EventArgs, delivery, event};
pub use render::table;
pub use subscription::{SubscriptionAction, SubscriptionArgs, subscription};

#[derive(Debug, Args)]
pub struct Connection {
    #[arg(long, value_name = "PATH", global = true, help = CONFIG_HELP)]
    pub config: Option<PathBuf>,
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

impl Connection {
    fn api(&self) -> Result<Api, CliError> {
        let config = Config::load(&config_path(self.config.as_deref()))?;
        Api::new(&config, self.url.as_deref(), self.cacert.as_deref())
    }
}

/// Which page of a list to show.
#[derive(Debug, Args)]
pub struct Page {
    /// How many to show, 1 to 500.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: u16,
    /// Start after the previous page: the cursor it ended with.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl Page {
    /// `GET path?limit=&cursor=` plus `filters`, printed as a page of `columns`.
    fn show(
        &self,
        connection: &Connection,
        path: &str,
        filters: &[(&str, &str)],
        columns: &[&str],
    ) -> Result<(), CliError> {
        let limit = self.limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        query.extend(self.cursor.as_deref().map(|cursor| ("cursor", cursor)));
        query.extend_from_slice(filters);
        let answer = connection.api()?.get(path, &query)?;
        render::show_page(connection.json, &answer, columns)
    }
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
        /// A name for people to read.
        #[arg(long)]
        name: String,
        /// Choose the id (1-64 of A-Z a-z 0-9 _ -); hookd generates one otherwise.
        #[arg(long)]
        id: Option<String>,
        /// The organisation this company belongs to [default: none, a top-level one].
        #[arg(long, value_name = "ENTITY_ID")]
        parent: Option<String>,
    },
    /// List the entities.
    List(Page),
}

const ENTITY_COLUMNS: &[&str] = &["id", "name", "parentId", "createdAt"];

pub fn entity(args: &EntityArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match &args.action {
        EntityAction::Create { name, id, parent } => {
            let body = json!({"name": name, "id": id, "parentId": parent});
            let answer = connection
                .api()?
                .call("POST", "/v1/admin/entities", Some(&body))?;
            render::show(connection.json, &answer, ENTITY_COLUMNS)
        }
        EntityAction::List(page) => {
            page.show(connection, "/v1/admin/entities", &[], ENTITY_COLUMNS)
        }
    }
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
        /// The entity the key acts for (and everything below it).
        #[arg(long, value_name = "ENTITY_ID")]
        entity: String,
        /// A name for people to read.
        #[arg(long)]
        name: String,
        /// A scope (repeat for several): events:write, subscriptions:read, ...
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
    },
    /// List the API keys (never the keys themselves).
    List(Page),
    /// Revoke a key; effective at once.
    Revoke {
        /// The key's id (key_...).
        id: String,
    },
}

pub fn key(args: &KeyArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match &args.action {
        KeyAction::Create {
            entity,
            name,
            scopes,
        } => {
            let body = json!({"entityId": entity, "name": name, "scopes": scopes});
            let answer = connection
                .api()?
                .call("POST", "/v1/admin/api-keys", Some(&body))?;
            let columns = ["id", "entityId", "name", "scopes", "key"];
            render::show(connection.json, &answer, &columns)?;
            if !connection.json {
                print("\nthe key is shown only now: store it safely\n")?;
            }
            Ok(())
        }
        KeyAction::List(page) => {
            let columns = ["id", "entityId", "name", "scopes", "createdAt"];
            page.show(connection, "/v1/admin/api-keys", &[], &columns)
        }
        KeyAction::Revoke { id } => {
            connection
                .api()?
                .call("DELETE", &format!("/v1/admin/api-keys/{id}"), None)?;
            print(format_args!("revoked {id}\n"))
        }
    }
}

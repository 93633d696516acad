//! `/v1/admin/*` (the admin token only): entities and API keys. Also the event-type
//! catalog, `GET /v1/event-types`, which any caller may read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use ring::digest::{SHA256, digest};
use ring::rand::SecureRandom;
use serde_json::{Value, json};

use super::auth::{EVENTS_WRITE, SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE};
use super::validate::Fields;
use super::{ApiError, ApiResponse, AppState, Caller, Request, data};
use crate::ids::{ApiKeyId, EntityId};
use crate::store::records::EntityRecord;
use crate::store::tenancy::{ApiKeyRecord, KeyView};
use crate::store::{EntityOutcome, now_ms};

/// The built-in operational event types (API.md "Operational events").
pub const BUILT_IN_TYPES: &[(&str, &str)] = &[
    (
        "hookd.subscription.disabled",
        "hookd disabled a subscription (410 Gone, or failing for delivery.disable_after).",
    ),
    ("hookd.delivery.failed", "A delivery ended FAILED."),
    (
        "hookd.ping",
        "A test event sent to one subscription by POST /v1/subscriptions/{id}/test.",
    ),
];

pub async fn route(
    state: &AppState,
    caller: &Caller,
    rest: &[&str],
    method: &Method,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "admin routes need the admin token".into(),
        ));
    }
    match (rest, method) {
        (["entities"], &Method::POST) => create_entity(state, request).await,
        (["entities"], &Method::GET) => Ok(list_entities(caller)),
        (["entities", id], &Method::GET) => get_entity(caller, id),
        (["entities", id], &Method::DELETE) => delete_entity(state, id).await,
        (["api-keys"], &Method::POST) => create_key(state, caller, request).await,
        (["api-keys"], &Method::GET) => Ok(list_keys(caller)),
        (["api-keys", id], &Method::DELETE) => revoke_key(state, id).await,
        _ => Err(ApiError::NotFound("route")),
    }
}

fn entity_view(id: &str, record: &EntityRecord) -> Value {
    json!({
        "id": id,
        "name": record.name,
        "parentId": record.parent,
        "createdAt": super::timestamp(record.created_ms),
    })
}

async fn create_entity(state: &AppState, request: Request) -> Result<ApiResponse, ApiError> {
    let value = super::subscriptions::read_object(state, request).await?;
    let fields = Fields::new(&value, "")?;
    fields.only(&["id", "name", "parentId"])?;
    let id = match fields.str("id")? {
        Some(raw) => EntityId::parse(raw)
            .filter(|id| id.as_str() != EntityId::ROOT)
            .ok_or_else(|| {
                ApiError::invalid("id", "must be 1-64 of A-Z a-z 0-9 _ - (and not \"root\")")
            })?,
        None => EntityId::generate(),
    };
    let name = fields.required_str("name")?;
    if name.trim().is_empty() || name.len() > 256 {
        return Err(ApiError::invalid("name", "must be 1-256 characters"));
    }
    let parent = fields.str("parentId")?.map(str::to_owned);
    let record = EntityRecord {
        name: name.to_owned(),
        parent: parent.clone(),
        created_ms: now_ms(),
    };
    match state
        .store
        .create_entity(id.to_string(), record.clone())
        .await?
    {
        EntityOutcome::Done => Ok(data(StatusCode::CREATED, entity_view(id.as_str(), &record))),
        EntityOutcome::Exists => Err(ApiError::Conflict(format!("an entity {id} exists already"))),
        EntityOutcome::NotFound => Err(ApiError::invalid("parentId", "names no existing entity")),
        EntityOutcome::InUse(why) => Err(ApiError::invalid("parentId", why)),
    }
}

fn list_entities(caller: &Caller) -> ApiResponse {
    let items = caller
        .view()
        .entities
        .iter()
        .map(|(id, record)| entity_view(id, record))
        .collect();
    super::list(items, None)
}

fn get_entity(caller: &Caller, id: &str) -> Result<ApiResponse, ApiError> {
    let record = caller
        .view()
        .entities
        .get(id)
        .ok_or(ApiError::NotFound("entity"))?;
    Ok(data(StatusCode::OK, entity_view(id, record)))
}

async fn delete_entity(state: &AppState, id: &str) -> Result<ApiResponse, ApiError> {
    match state.store.delete_entity(id.to_owned()).await? {
        EntityOutcome::Done => Ok(super::no_content()),
        EntityOutcome::NotFound | EntityOutcome::Exists => Err(ApiError::NotFound("entity")),
        EntityOutcome::InUse(why) => Err(ApiError::Conflict(format!(
            "the entity cannot be deleted: {why}"
        ))),
    }
}

/// Scopes a key may carry: the three of API.md and each catalog type's read scope.
fn known_scope(state: &AppState, scope: &str) -> bool {
    [EVENTS_WRITE, SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE].contains(&scope)
        || state.config.event_types.iter().any(|t| t.scope == scope)
}

async fn create_key(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let value = super::subscriptions::read_object(state, request).await?;
    let fields = Fields::new(&value, "")?;
    fields.only(&["entityId", "name", "scopes"])?;
    let entity = fields.required_str("entityId")?;
    if !caller.view().entities.exists(entity) {
        return Err(ApiError::invalid("entityId", "names no existing entity"));
    }
    let name = fields.required_str("name")?;
    if name.trim().is_empty() || name.len() > 256 {
        return Err(ApiError::invalid("name", "must be 1-256 characters"));
    }
    let scopes = fields.string_list("scopes")?.ok_or_else(|| {
        ApiError::invalid("scopes", "is required (for example [\"events:write\"])")
    })?;
    for (i, scope) in scopes.iter().enumerate() {
        if !known_scope(state, scope) {
            return Err(ApiError::invalid(
                format!("scopes[{i}]"),
                "is not events:write, subscriptions:read, subscriptions:write or a catalog scope",
            ));
        }
    }
    let mut random = [0u8; 32];
    state
        .rng
        .fill(&mut random)
        .map_err(|_| ApiError::internal(crate::secret::SealError::Random))?;
    let key = format!("hk_{}", URL_SAFE_NO_PAD.encode(random));
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest(&SHA256, key.as_bytes()).as_ref());
    let id = ApiKeyId::generate();
    let record = ApiKeyRecord {
        entity: entity.to_owned(),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        sha256,
        created_ms: now_ms(),
    };
    state.store.create_key(id.0, record.clone()).await?;
    tracing::info!(key = %id, entity, "API key created");
    let mut view = key_view(&KeyView { id: id.0, record });
    view["key"] = Value::String(key);
    Ok(data(StatusCode::CREATED, view))
}

fn key_view(key: &KeyView) -> Value {
    json!({
        "id": ApiKeyId(key.id).to_string(),
        "entityId": key.record.entity,
        "name": key.record.name,
        "scopes": key.record.scopes,
        "createdAt": super::timestamp(key.record.created_ms),
    })
}

fn list_keys(caller: &Caller) -> ApiResponse {
    super::list(
        caller.view().keys.iter().map(|k| key_view(k)).collect(),
        None,
    )
}

async fn revoke_key(state: &AppState, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let id = ApiKeyId::parse(raw_id).ok_or(ApiError::NotFound("API key"))?;
    if !state.store.revoke_key(id.0).await? {
        return Err(ApiError::NotFound("API key"));
    }
    tracing::info!(key = %id, "API key revoked");
    Ok(super::no_content())
}

/// `GET /v1/event-types`: the configured catalog and hookd's own types.
pub fn event_types(state: &AppState, _caller: &Caller) -> ApiResponse {
    let mut items: Vec<Value> = state
        .config
        .event_types
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "scope": t.scope}))
        .collect();
    items.extend(
        BUILT_IN_TYPES
            .iter()
            .map(|(name, description)| json!({"name": name, "description": description, "scope": SUBSCRIPTIONS_READ})),
    );
    super::list(items, None)
}

/// The scope map the store matches with: the catalog plus the built-in types.
pub fn catalog_scopes(config: &crate::config::Config) -> std::collections::HashMap<String, String> {
    let mut map: std::collections::HashMap<String, String> = config
        .event_types
        .iter()
        .map(|t| (t.name.clone(), t.scope.clone()))
        .collect();
    for (name, _) in BUILT_IN_TYPES {
        map.insert((*name).to_owned(), SUBSCRIPTIONS_READ.to_owned());
    }
    map
}

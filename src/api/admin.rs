//! `/v1/admin/*` (the admin token only): entities and API keys. Also the event-type
//! catalog, `GET /v1/event-types`, which any caller may read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use ring::digest::{SHA256, digest};
use ring::rand::SecureRandom;
use serde_json::{Value, json};

use super::auth::{EVENTS_WRITE, PORTAL_WRITE, SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE};
use super::validate::{self, Fields};
use super::{ApiError, ApiResponse, AppState, Caller, Page, Request, data};
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

fn entity_view(id: &str, record: &EntityRecord) -> Value {
    json!({
        "id": id,
        "name": record.name,
        "parentId": record.parent,
        "createdAt": super::timestamp(record.created_ms),
    })
}

pub(super) async fn create_entity(
    state: &AppState,
    request: Request,
) -> Result<ApiResponse, ApiError> {
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
    let name = validate::name(&fields, "name")?;
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

pub(super) fn list_entities(caller: &Caller, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let after = page.after_name()?;
    let entities = caller.view().entities.after(after.as_deref());
    let (found, next) = super::take_page(entities.map(|(id, r)| (id.as_str(), r)), page.limit);
    let items = found.iter().map(|(id, r)| entity_view(id, r)).collect();
    Ok(super::list_from(items, next.map(super::name_cursor)))
}

pub(super) fn get_entity(caller: &Caller, id: &str) -> Result<ApiResponse, ApiError> {
    let record = caller
        .view()
        .entities
        .get(id)
        .ok_or(ApiError::NotFound("entity"))?;
    Ok(data(StatusCode::OK, entity_view(id, record)))
}

pub(super) async fn delete_entity(state: &AppState, id: &str) -> Result<ApiResponse, ApiError> {
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
    [
        EVENTS_WRITE,
        SUBSCRIPTIONS_READ,
        SUBSCRIPTIONS_WRITE,
        PORTAL_WRITE,
    ]
    .contains(&scope)
        || state.config.event_types.iter().any(|t| t.scope == scope)
}

pub(super) async fn create_key(
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
    let name = validate::name(&fields, "name")?;
    let scopes = fields.string_list("scopes")?.ok_or_else(|| {
        ApiError::invalid("scopes", "is required (for example [\"events:write\"])")
    })?;
    for (i, scope) in scopes.iter().enumerate() {
        if !known_scope(state, scope) {
            return Err(ApiError::invalid(
                format!("scopes[{i}]"),
                "is not events:write, subscriptions:read, subscriptions:write, portal:write or a catalog scope",
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

pub(super) fn list_keys(caller: &Caller, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let keys = caller
        .view()
        .keys
        .after(page.after_id()?)
        .map(|k| (k.id, k));
    let (found, next) = super::take_page(keys, page.limit);
    let items = found.iter().map(|(_, k)| key_view(k)).collect();
    Ok(super::list(items, next))
}

pub(super) async fn revoke_key(state: &AppState, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let id = ApiKeyId::parse(raw_id).ok_or(ApiError::NotFound("API key"))?;
    if !state.store.revoke_key(id.0).await? {
        return Err(ApiError::NotFound("API key"));
    }
    tracing::info!(key = %id, "API key revoked");
    Ok(super::no_content())
}

/// `GET /v1/event-types`: the configured catalog and hookd's own types, by name.
pub(super) fn event_types(state: &AppState, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let after = page.after_name()?;
    let mut types: Vec<(&str, &str, &str)> = state
        .config
        .event_types
        .iter()
        .map(|t| (t.name.as_str(), t.description.as_str(), t.scope.as_str()))
        .chain(
            BUILT_IN_TYPES
                .iter()
                .map(|(name, description)| (*name, *description, SUBSCRIPTIONS_READ)),
        )
        .collect();
    types.sort_unstable();
    let listed = types
        .into_iter()
        .filter(|(name, _, _)| after.as_deref().is_none_or(|a| *name > a))
        .map(|t| (t.0, t));
    let (found, next) = super::take_page(listed, page.limit);
    let items = found
        .iter()
        .map(|(_, (name, description, scope))| {
            json!({"name": name, "description": description, "scope": scope})
        })
        .collect();
    Ok(super::list_from(items, next.map(super::name_cursor)))
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

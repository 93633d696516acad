//! The operator's pages (admin token only): entities and API keys. A new key is shown
//! once, on the page its form answers; the API stores only its hash.

use http::{Method, StatusCode};
use maud::html;
use serde_json::{Value, json};

use super::form::{encode, query};
use super::layout::{button_form, csrf, field, next_link, text, when};
use super::{Ctx, Reply};
use crate::api::ApiError;

/// The scopes offered as checkboxes (a catalog scope is typed in).
const SCOPES: [&str; 4] = [
    "events:write",
    "subscriptions:read",
    "subscriptions:write",
    "portal:write",
];

/// One page (100) of an admin list, from the page's own cursor: (body, items).
async fn listing(ctx: &Ctx<'_>, path: &str) -> Result<(Value, Vec<Value>), ApiError> {
    let cursor = ctx.param("cursor");
    let target = format!(
        "{path}?{}",
        query(&[("limit", Some("100")), ("cursor", cursor.as_deref())])
    );
    let list = ctx.get(&target).await?;
    let items = list["data"].as_array().cloned().unwrap_or_default();
    Ok((list, items))
}

pub async fn entities(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    entities_page(ctx, None, StatusCode::OK).await
}

async fn entities_page(
    ctx: &Ctx<'_>,
    error: Option<(String, String)>,
    status: StatusCode,
) -> Result<Reply, ApiError> {
    let (list, items) = listing(ctx, "/v1/admin/entities").await?;
    let error_of = |name: &str| {
        error
            .as_ref()
            .filter(|(field, _)| field == name)
            .map(|(field, detail)| format!("{field}: {detail}"))
    };
    let content = html! {
        h1 { "Entities" }
        div.table-wrap {
            table {
                thead { tr { th { "Id" } th { "Name" } th { "Parent" } th { "Created" } } }
                tbody {
                    @for entity in &items {
                        tr {
                            td.mono { (text(entity, "id")) }
                            td { (text(entity, "name")) }
                            td.mono { (text(entity, "parentId")) }
                            td { (when(&entity["createdAt"])) }
                        }
                    }
                }
            }
        }
        (next_link(&list, "/console/entities"))
        form.card method="post" action="/console/entities" {
            h2 { "New entity" }
            (csrf(ctx.csrf()))
            (field("Id (optional)", "id", "text", ctx.form.get("id").unwrap_or(""), error_of("id").as_deref()))
            (field("Name", "name", "text", ctx.form.get("name").unwrap_or(""), error_of("name").as_deref()))
            (field("Parent (optional)", "parentId", "text", ctx.form.get("parentId").unwrap_or(""), error_of("parentId").as_deref()))
            @if let Some((field, detail)) = error.as_ref().filter(|(f, _)| !["id", "name", "parentId"].contains(&f.as_str())) {
                p.error role="alert" { (field) ": " (detail) }
            }
            button type="submit" { "Create entity" }
        }
    };
    Ok(Reply::Html(status, "Entities".into(), content))
}

pub async fn create_entity(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let mut body = json!({"name": ctx.form.get("name").unwrap_or("")});
    for key in ["id", "parentId"] {
        if let Some(value) = ctx.form.get(key) {
            body[key] = Value::from(value);
        }
    }
    match ctx
        .api(Method::POST, "/v1/admin/entities", Some(&body))
        .await
    {
        Ok(_) => {
            ctx.notify("Entity created.").await;
            Ok(Reply::Redirect("/console/entities".into()))
        }
        Err(ApiError::Invalid { field, detail }) => {
            entities_page(ctx, Some((field, detail)), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ApiError::Conflict(detail)) => {
            entities_page(ctx, Some((String::new(), detail)), StatusCode::CONFLICT).await
        }
        Err(other) => Err(other),
    }
}

pub async fn keys(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    keys_page(ctx, None, None, StatusCode::OK).await
}

/// The key list, the form, and `created` (a new key, shown this once).
async fn keys_page(
    ctx: &Ctx<'_>,
    created: Option<&Value>,
    error: Option<(String, String)>,
    status: StatusCode,
) -> Result<Reply, ApiError> {
    let (list, items) = listing(ctx, "/v1/admin/api-keys").await?;
    let content = html! {
        h1 { "API keys" }
        @if let Some(created) = created {
            div.card role="status" {
                h2 { "New key for " (text(created, "entityId")) }
                p { "Copy it now: it is shown only this once (hookd keeps only its hash)." }
                pre.secret { (text(created, "key")) }
            }
        }
        div.table-wrap {
            table {
                thead { tr { th { "Name" } th { "Entity" } th { "Scopes" } th { "Created" } th { "" } } }
                tbody {
                    @for key in &items {
                        tr {
                            td { (text(key, "name")) br; span.mono.muted { (text(key, "id")) } }
                            td.mono { (text(key, "entityId")) }
                            td { (key["scopes"].as_array().map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default()) }
                            td { (when(&key["createdAt"])) }
                            td { (button_form(&format!("/console/keys/{}/revoke", text(key, "id")), ctx.csrf(), "Revoke", Some("Revoke this key? Everything using it stops at once."))) }
                        }
                    }
                }
            }
        }
        (next_link(&list, "/console/keys"))
        form.card method="post" action="/console/keys" {
            h2 { "New API key" }
            (csrf(ctx.csrf()))
            (field("Entity", "entityId", "text", ctx.form.get("entityId").unwrap_or(""), error.as_ref().filter(|(f, _)| f == "entityId").map(|(_, d)| d.as_str())))
            (field("Name", "name", "text", ctx.form.get("name").unwrap_or(""), error.as_ref().filter(|(f, _)| f == "name").map(|(_, d)| d.as_str())))
            fieldset {
                legend { "Scopes" }
                @for scope in SCOPES {
                    div.field.check {
                        input id=(format!("f-scope-{scope}")) type="checkbox" name="scope" value=(scope);
                        label for=(format!("f-scope-{scope}")) { (scope) }
                    }
                }
                (field("Catalog read scopes (space separated, optional)", "extraScopes", "text", "", None))
            }
            @if let Some((field, detail)) = error.as_ref().filter(|(f, _)| f != "entityId" && f != "name") {
                p.error role="alert" { (field) ": " (detail) }
            }
            button type="submit" { "Create key" }
        }
    };
    Ok(Reply::Html(status, "API keys".into(), content))
}

pub async fn create_key(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let mut scopes: Vec<Value> = ctx.form.all("scope").map(Value::from).collect();
    scopes.extend(
        ctx.form
            .get("extraScopes")
            .unwrap_or("")
            .split_whitespace()
            .map(Value::from),
    );
    let body = json!({
        "entityId": ctx.form.get("entityId").unwrap_or(""),
        "name": ctx.form.get("name").unwrap_or(""),
        "scopes": scopes,
    });
    match ctx
        .api(Method::POST, "/v1/admin/api-keys", Some(&body))
        .await
    {
        Ok(called) => keys_page(ctx, Some(&called.body["data"]), None, StatusCode::CREATED).await,
        Err(ApiError::Invalid { field, detail }) => {
            keys_page(
                ctx,
                None,
                Some((field, detail)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(other) => Err(other),
    }
}

pub async fn revoke_key(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let target = format!("/v1/admin/api-keys/{}", encode(&ctx.id));
    ctx.api(Method::DELETE, &target, None).await?;
    ctx.notify("Key revoked; its console and portal sessions ended with it.")
        .await;
    Ok(Reply::Redirect("/console/keys".into()))
}

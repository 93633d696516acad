//! Subscription pages: the list (status and last outcome), one subscription with its
//! actions (pause or resume, delete, test event, replay since a time). Each reads and
//! acts through the API as the session's caller.

use http::{Method, StatusCode};
use maud::html;
use serde_json::{Value, json};

use super::form::{encode, query};
use super::layout::{badge, button_form, field, next_link, text, utc, when};
use super::{Ctx, Reply};
use crate::api::ApiError;

pub async fn list(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let base = ctx.base;
    let cursor = ctx.param("cursor");
    let target = format!(
        "/v1/subscriptions?{}",
        query(&[("limit", Some("50")), ("cursor", cursor.as_deref())])
    );
    let list = ctx.get(&target).await?;
    let items = list["data"].as_array().cloned().unwrap_or_default();
    // The last outcome of each: its newest delivery (one short read each, 50 at most).
    let mut last = Vec::with_capacity(items.len());
    for item in &items {
        let id = encode(text(item, "id"));
        let newest = ctx
            .get(&format!("/v1/subscriptions/{id}/deliveries?limit=1"))
            .await?;
        last.push(newest["data"][0].clone());
    }
    let can_write = ctx.allows("GET", "/subscriptions/new");
    let content = html! {
        div.title-row {
            h1 { "Subscriptions" }
            @if can_write { a.button href=(format!("{base}/subscriptions/new")) { "New subscription" } }
        }
        @if items.is_empty() {
            p.muted { "No subscriptions yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Endpoint" } th { "Status" } th { "Event types" } th { "Last outcome" } } }
                    tbody {
                        @for (item, newest) in items.iter().zip(&last) {
                            tr {
                                td {
                                    a href=(format!("{base}/subscriptions/{}", text(item, "id"))) { (text(item, "endpointUrl")) }
                                    @if let Some(description) = item["description"].as_str() {
                                        br; span.muted { (description) }
                                    }
                                }
                                td { (badge(text(item, "status"))) }
                                td { (types(item)) }
                                td { (outcome(base, newest)) }
                            }
                        }
                    }
                }
            }
        }
        (next_link(&list, &format!("{base}/subscriptions")))
    };
    Ok(Reply::Html(StatusCode::OK, "Subscriptions".into(), content))
}

/// A subscription's event types, comma separated.
pub fn types(item: &Value) -> String {
    item["eventTypes"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A delivery's state, last status or error, and when.
pub fn outcome(base: &str, delivery: &Value) -> maud::Markup {
    html! {
        @if delivery.is_null() {
            span.muted { "none yet" }
        } @else {
            a href=(format!("{base}/deliveries/{}", text(delivery, "id"))) { (badge(text(delivery, "state"))) }
            " "
            @if let Some(status) = delivery["lastStatus"].as_u64() { "HTTP " (status) }
            @if let Some(error) = delivery["lastError"].as_str() { span.muted { (error) } }
            br; span.muted { (when(&delivery["updatedAt"])) }
        }
    }
}

pub async fn detail(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let id = encode(&ctx.id);
    let sub = ctx.get(&format!("/v1/subscriptions/{id}")).await?["data"].clone();
    let newest = ctx
        .get(&format!("/v1/subscriptions/{id}/deliveries?limit=10"))
        .await?;
    let can_manage = ctx.allows("POST", "/subscriptions/{id}/status");
    let can_resend = ctx.allows("POST", "/subscriptions/{id}/test");
    let can_see_secret = ctx.allows("POST", "/subscriptions/{id}/secret");
    let base = ctx.base;
    let here = format!("{base}/subscriptions/{}", ctx.id);
    let active = text(&sub, "status") == "ACTIVE";
    let content = html! {
        h1 { "Subscription" }
        p.mono { (ctx.id) }
        dl.facts {
            dt { "Endpoint" } dd.mono { (text(&sub, "endpointUrl")) }
            dt { "Status" } dd { (badge(text(&sub, "status")))
                @if let Some(reason) = sub["disabledReason"].as_str() { " " span.muted { (reason) } } }
            dt { "Description" } dd { (text(&sub, "description")) }
            dt { "Entity" } dd.mono { (text(&sub, "entityId")) }
            dt { "Event types" } dd { (types(&sub)) }
            dt { "Endpoint authentication" } dd { (text(&sub["endpointAuth"], "type")) }
            dt { "Custom headers" } dd {
                @if let Some(headers) = sub["customHeaders"].as_object() {
                    @for (name, value) in headers { code { (name) ": " (value.as_str().unwrap_or("")) } br; }
                }
            }
            dt { "Rate limit" } dd { @if let Some(rate) = sub["rateLimit"].as_u64() { (rate) " per second" } @else { "none" } }
            dt { "Created" } dd { (when(&sub["createdAt"])) }
        }
        div.actions {
            @if can_manage {
                a.button href=(format!("{here}/edit")) { "Edit" }
                form.inline method="post" action=(format!("{here}/status")) {
                    (super::layout::csrf(ctx.csrf()))
                    input type="hidden" name="status" value=(if active { "DEACTIVATED" } else { "ACTIVE" });
                    button type="submit" { (if active { "Pause" } else { "Resume" }) }
                }
            }
            @if can_resend && active {
                (button_form(&format!("{here}/test"), ctx.csrf(), "Send test event", None))
            }
            @if can_see_secret {
                (button_form(&format!("{here}/secret"), ctx.csrf(), "Reveal signing secret", None))
                (button_form(&format!("{here}/secret/rotate"), ctx.csrf(), "Rotate signing secret", Some("Rotate the signing secret? The old one keeps signing beside the new one for delivery.rotation_overlap.")))
            }
            @if can_manage {
                (button_form(&format!("{here}/delete"), ctx.csrf(), "Delete", Some("Delete this subscription? Its pending deliveries are cancelled.")))
            }
        }
        @if can_resend {
            form.card method="post" action=(format!("{here}/replay")) {
                h2 { "Replay" }
                (super::layout::csrf(ctx.csrf()))
                (field("Since (UTC)", "since", "datetime-local", "", None))
                div.field.check {
                    input id="f-onlyFailed" type="checkbox" name="onlyFailed" value="true";
                    label for="f-onlyFailed" { "Only events whose delivery failed" }
                }
                button type="submit" { "Replay since this time" }
            }
        }
        h2 { "Latest deliveries" }
        (super::deliveries::table(base, &newest["data"]))
        p { a href=(format!("{base}/deliveries?subscription={}", ctx.id)) { "All deliveries of this subscription →" } }
    };
    Ok(Reply::Html(StatusCode::OK, "Subscription".into(), content))
}

pub async fn status(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let status = ctx.form.get("status").unwrap_or_default();
    let target = format!("/v1/subscriptions/{}", encode(&ctx.id));
    ctx.api(Method::PATCH, &target, Some(&json!({"status": status})))
        .await?;
    ctx.notify(match status {
        "ACTIVE" => "Subscription resumed.",
        _ => "Subscription paused: new events do not fan out to it.",
    })
    .await;
    Ok(back(ctx))
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let target = format!("/v1/subscriptions/{}", encode(&ctx.id));
    ctx.api(Method::DELETE, &target, None).await?;
    ctx.notify("Subscription deleted; its pending deliveries were cancelled.")
        .await;
    Ok(Reply::Redirect(format!("{}/subscriptions", ctx.base)))
}

/// Sends a `hookd.ping` and shows its delivery.
pub async fn test(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let target = format!("/v1/subscriptions/{}/test", encode(&ctx.id));
    match ctx.api(Method::POST, &target, None).await {
        Ok(called) => {
            ctx.notify("Test event sent.").await;
            let delivery = text(&called.body["data"], "id");
            Ok(Reply::Redirect(format!(
                "{}/deliveries/{}",
                ctx.base,
                encode(delivery)
            )))
        }
        Err(error @ ApiError::Conflict(_)) => {
            ctx.notify(error.to_string()).await;
            Ok(back(ctx))
        }
        Err(error) => Err(error),
    }
}

pub async fn replay(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let since = utc(ctx.form.get("since").unwrap_or_default());
    let mut body = json!({"since": since});
    if ctx.form.get("onlyFailed") == Some("true") {
        body["onlyFailed"] = Value::Bool(true);
    }
    let target = format!("/v1/subscriptions/{}/replay", encode(&ctx.id));
    match ctx.api(Method::POST, &target, Some(&body)).await {
        Ok(called) => {
            let queued = called.body["data"]["queued"].as_u64().unwrap_or(0);
            ctx.notify(format!("Replay queued {queued} deliveries."))
                .await;
        }
        Err(error @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            ctx.notify(format!("Replay refused: {error}")).await;
        }
        Err(error) => return Err(error),
    }
    Ok(back(ctx))
}

/// The signing secret, shown because the form asked for it (`rotate`: a new one first).
/// The page is never cached (every console answer is `no-store`).
pub async fn secret(ctx: &Ctx<'_>, rotate: bool) -> Result<Reply, ApiError> {
    let id = encode(&ctx.id);
    let called = if rotate {
        let target = format!("/v1/subscriptions/{id}/secret/rotate");
        ctx.api(Method::POST, &target, None).await?
    } else {
        let target = format!("/v1/subscriptions/{id}/secret");
        ctx.api(Method::GET, &target, None).await?
    };
    let secret = text(&called.body["data"], "signingSecret").to_owned();
    let content = html! {
        h1 { @if rotate { "New signing secret" } @else { "Signing secret" } }
        p.mono { (ctx.id) }
        @if rotate {
            p { "The previous secret keeps signing beside this one for the rotation overlap, so receivers can switch." }
        }
        p { "Whoever holds this secret can sign webhooks as hookd. It is not shown again unless asked for." }
        pre.secret { (secret) }
        p { a href=(format!("{}/subscriptions/{}", ctx.base, id)) { "Back to the subscription" } }
    };
    Ok(Reply::Html(
        StatusCode::OK,
        "Signing secret".into(),
        content,
    ))
}

fn back(ctx: &Ctx<'_>) -> Reply {
    Reply::Redirect(format!("{}/subscriptions/{}", ctx.base, encode(&ctx.id)))
}

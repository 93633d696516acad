//! Delivery pages: a subscription's deliveries by state (RETRYING and FAILED first),
//! one delivery with every attempt (when, URL, the request headers, status, duration,
//! response headers and body, error), and a retry.

use http::{Method, StatusCode};
use maud::{Markup, html};
use serde_json::Value;

use super::form::{encode, query};
use super::layout::{badge, button_form, next_link, text, when};
use super::{Ctx, Reply};
use crate::api::ApiError;

/// States in the order an operator looks at them: what needs attention first.
const STATES: [&str; 5] = ["RETRYING", "FAILED", "PENDING", "SUCCEEDED", "CANCELLED"];
/// Deliveries shown in each "needs attention" table above the full list.
const ATTENTION_LIMIT: u32 = 10;
/// Subscriptions offered in the chooser (the API's largest page).
const CHOOSER_LIMIT: &str = "500";

/// Deliveries as a table: state, last status, attempts, when.
pub fn table(base: &str, deliveries: &Value) -> Markup {
    let empty = Vec::new();
    let items = deliveries.as_array().unwrap_or(&empty);
    html! {
        @if items.is_empty() {
            p.muted { "No deliveries." }
        } @else {
            div.table-wrap {
                table.deliveries {
                    thead { tr { th { "Delivery" } th { "State" } th { "Last status" } th { "Attempts" } th { "Updated" } } }
                    tbody {
                        @for d in items {
                            tr {
                                td.mono { a href=(format!("{base}/deliveries/{}", text(d, "id"))) { (text(d, "id")) } }
                                td { (badge(text(d, "state"))) }
                                td {
                                    @if let Some(status) = d["lastStatus"].as_u64() { (status) }
                                    @if let Some(error) = d["lastError"].as_str() { " " span.muted { (error) } }
                                }
                                td { (d["attempts"].as_u64().unwrap_or(0)) }
                                td { (when(&d["updatedAt"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let subscription = ctx.param("subscription");
    let state = ctx.param("state").filter(|s| STATES.contains(&s.as_str()));
    let subscriptions = ctx
        .get(&format!("/v1/subscriptions?limit={CHOOSER_LIMIT}"))
        .await?;
    let empty = Vec::new();
    let choices = subscriptions["data"].as_array().unwrap_or(&empty);
    let list = match &subscription {
        Some(id) => Some(
            ctx.get(&format!(
                "/v1/subscriptions/{}/deliveries?{}",
                encode(id),
                query(&[
                    ("state", state.as_deref()),
                    ("limit", Some("50")),
                    ("cursor", ctx.param("cursor").as_deref()),
                ])
            ))
            .await?,
        ),
        None => None,
    };
    // Without a state, first what needs attention: the newest RETRYING and FAILED.
    let mut attention = Vec::new();
    if let (Some(id), None, None) = (&subscription, &state, ctx.param("cursor")) {
        for wanted in ["RETRYING", "FAILED"] {
            let found = ctx
                .get(&format!(
                    "/v1/subscriptions/{}/deliveries?state={wanted}&limit={ATTENTION_LIMIT}",
                    encode(id)
                ))
                .await?;
            attention.push((wanted, found));
        }
    }
    let base = ctx.base;
    let here = format!(
        "{base}/deliveries?{}",
        query(&[
            ("subscription", subscription.as_deref()),
            ("state", state.as_deref())
        ])
    );
    let content = html! {
        h1 { "Deliveries" }
        form.card.search method="get" action=(format!("{base}/deliveries")) {
            div.field {
                label for="f-subscription" { "Subscription" }
                select id="f-subscription" name="subscription" {
                    @for sub in choices {
                        option value=(text(sub, "id")) selected[subscription.as_deref() == Some(text(sub, "id"))] {
                            (text(sub, "endpointUrl")) " (" (text(sub, "id")) ")"
                        }
                    }
                }
            }
            div.field {
                label for="f-state" { "State" }
                select id="f-state" name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[state.as_deref() == Some(s)] { (s) } }
                }
            }
            button type="submit" { "Show" }
        }
        @for (wanted, found) in &attention {
            @if found["data"].as_array().is_some_and(|d| !d.is_empty()) {
                h2 { (wanted) }
                (table(base, &found["data"]))
                @if found["nextCursor"].is_string() {
                    p { a href=(format!("{here}&state={wanted}")) { "All " (wanted) " deliveries →" } }
                }
            }
        }
        @if let Some(list) = &list {
            @if !attention.is_empty() { h2 { "All, newest first" } }
            (table(base, &list["data"]))
            (next_link(list, &here))
        } @else if choices.is_empty() {
            p.muted { "No subscriptions yet, so no deliveries." }
        } @else {
            p.muted { "Choose a subscription." }
        }
    };
    Ok(Reply::Html(StatusCode::OK, "Deliveries".into(), content))
}

pub async fn detail(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let base = ctx.base;
    let id = encode(&ctx.id);
    let delivery = ctx.get(&format!("/v1/deliveries/{id}")).await?["data"].clone();
    let attempts = ctx
        .get(&format!(
            "/v1/deliveries/{id}/attempts?{}",
            query(&[
                ("limit", Some("50")),
                ("cursor", ctx.param("cursor").as_deref())
            ])
        ))
        .await?;
    // The subscription as configured now, for the request headers (gone once deleted).
    let sub_id = text(&delivery, "subscriptionId");
    let sub = ctx
        .get(&format!("/v1/subscriptions/{}", encode(sub_id)))
        .await
        .ok()
        .map(|s| s["data"].clone());
    let state = text(&delivery, "state");
    let attempts_made = delivery["attempts"].as_u64().unwrap_or(0);
    // After "Retry now" (`?after=N`): reload until that attempt is recorded.
    let awaited = ctx
        .param("after")
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|before| attempts_made <= before);
    let in_flight = matches!(state, "PENDING" | "RETRYING") || awaited;
    let empty = Vec::new();
    let content = html! {
        h1 { "Delivery" }
        p.mono { (ctx.id) }
        @if in_flight { div hidden data-refresh="2" {} }
        dl.facts {
            dt { "State" } dd { (badge(state)) }
            dt { "Event" } dd.mono { a href=(format!("{base}/events/{}", text(&delivery, "eventId"))) { (text(&delivery, "eventId")) } }
            dt { "Subscription" } dd.mono { a href=(format!("{base}/subscriptions/{sub_id}")) { (sub_id) } }
            dt { "Attempts" } dd { (attempts_made) }
            dt { "Next attempt" } dd { (when(&delivery["nextAttemptAt"])) }
            dt { "Last status" } dd { @if let Some(s) = delivery["lastStatus"].as_u64() { (s) } @else { "—" } }
            dt { "Last error" } dd { (text(&delivery, "lastError")) }
        }
        @if ctx.allows("POST", "/deliveries/{id}/retry") && state != "CANCELLED" {
            div.actions { (button_form(&format!("{base}/deliveries/{id}/retry"), ctx.csrf(), "Retry now", None)) }
        }
        h2 { "Attempts" }
        @let items = attempts["data"].as_array().unwrap_or(&empty);
        @if items.is_empty() { p.muted { "No attempt yet." } }
        ol.attempts {
            @for attempt in items {
                li.attempt { (attempt_view(attempt, &delivery, sub.as_ref())) }
            }
        }
        (next_link(&attempts, &format!("{base}/deliveries/{id}")))
    };
    Ok(Reply::Html(StatusCode::OK, "Delivery".into(), content))
}

fn attempt_view(attempt: &Value, delivery: &Value, sub: Option<&Value>) -> Markup {
    let status = attempt["statusCode"].as_u64();
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    let response_headers = attempt["responseHeaders"].as_object();
    html! {
        h3 {
            (when(&attempt["attemptedAt"])) " — "
            @if let Some(status) = status { span class=(if ok { "badge ok" } else { "badge bad" }) { "HTTP " (status) } }
            @else { span.badge.bad { "no response" } }
            " in " (attempt["durationMs"].as_u64().unwrap_or(0)) " ms"
        }
        dl.facts {
            dt { "URL" } dd.mono { (text(attempt, "url")) }
            @if let Some(error) = attempt["error"].as_str() { dt { "Error" } dd.error { (error) } }
        }
        @if let Some(sent) = attempt["requestHeaders"].as_object() {
            details {
                summary { "Request headers (as sent; secrets masked)" }
                pre {
                    @for (name, value) in sent { (name) ": " (value.as_str().unwrap_or("")) "\n" }
                }
            }
        } @else {
            details {
                summary { "Request headers (not recorded for this attempt: from the subscription as configured now; secrets masked)" }
                pre { (request_headers(attempt, delivery, sub)) }
            }
        }
        details open[!ok] {
            summary { "Response headers" }
            pre {
                @if let Some(headers) = response_headers {
                    @for (name, value) in headers { (name) ": " (value.as_str().unwrap_or("")) "\n" }
                }
            }
        }
        details open {
            summary { "Response body (first 4 KiB)" }
            pre.response-body { (text(attempt, "responseBody")) }
        }
    }
}

/// The headers hookd sends (API.md "What a subscriber receives"), with the signature
/// and endpoint credentials masked and custom header values as the API shows them.
fn request_headers(attempt: &Value, delivery: &Value, sub: Option<&Value>) -> String {
    let Some(sub) = sub else {
        return "the subscription was deleted".into();
    };
    let seconds = attempt["attemptedAt"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let custom = sub["customHeaders"].as_object();
    let has_custom =
        |name: &str| custom.is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)));
    let mut lines = vec!["content-type: application/json".to_owned()];
    if !has_custom("user-agent") {
        lines.push(format!("user-agent: hookd/{}", env!("CARGO_PKG_VERSION")));
    }
    lines.push(format!("webhook-id: {}", text(delivery, "eventId")));
    lines.push(format!("webhook-timestamp: {seconds}"));
    lines.push("webhook-signature: v1,****".into());
    match text(&sub["endpointAuth"], "type") {
        "BASIC" => lines.push("authorization: Basic ****".into()),
        "OAUTH2_CLIENT_CREDENTIALS" => lines.push("authorization: Bearer ****".into()),
        _ => {}
    }
    for (name, value) in custom.into_iter().flatten() {
        lines.push(format!("{name}: {}", value.as_str().unwrap_or("")));
    }
    lines.join("\n")
}

pub async fn retry(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let id = encode(&ctx.id);
    match ctx
        .api(Method::POST, &format!("/v1/deliveries/{id}/retry"), None)
        .await
    {
        Ok(called) => {
            ctx.notify("Retry queued: one attempt now.").await;
            let before = called.body["data"]["attempts"].as_u64().unwrap_or(0);
            Ok(Reply::Redirect(format!(
                "{}/deliveries/{id}?after={before}",
                ctx.base
            )))
        }
        Err(error @ ApiError::Conflict(_)) => {
            ctx.notify(format!("Retry refused: {error}")).await;
            Ok(Reply::Redirect(format!("{}/deliveries/{id}", ctx.base)))
        }
        Err(error) => Err(error),
    }
}

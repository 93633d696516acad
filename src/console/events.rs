//! Event pages: search by type, time range or id (newest first, a page at a time), one
//! event with its payload and the deliveries the caller may see, and the catalog.

use http::StatusCode;
use maud::html;

use super::form::{encode, query};
use super::layout::{field, next_link, pretty, text, utc, when};
use super::{Ctx, Reply};
use crate::api::ApiError;

pub async fn list(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let params: Vec<(String, String)> = crate::api::query_pairs(ctx.query.as_deref())
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(id) = param("id") {
        return Ok(Reply::Redirect(format!(
            "{}/events/{}",
            ctx.base,
            encode(id)
        )));
    }
    let (since, until) = (param("since").map(utc), param("until").map(utc));
    let filters = [
        ("eventType", param("eventType")),
        ("since", since.as_deref()),
        ("until", until.as_deref()),
    ];
    let mut api_query = filters.to_vec();
    api_query.extend([("limit", Some("50")), ("cursor", param("cursor"))]);
    let (list, error) = match ctx.get(&format!("/v1/events?{}", query(&api_query))).await {
        Ok(list) => (list, None),
        Err(ApiError::Invalid { field, detail }) => {
            (serde_json::Value::Null, Some((field, detail)))
        }
        Err(other) => return Err(other),
    };
    let error_of = |name: &str| {
        error
            .as_ref()
            .filter(|(field, _)| field == name)
            .map(|(field, detail)| format!("{field}: {detail}"))
    };
    let page_query = query(&[
        ("eventType", param("eventType")),
        ("since", param("since")),
        ("until", param("until")),
    ]);
    let base = ctx.base;
    let here = format!("{base}/events?{page_query}");
    let empty = Vec::new();
    let items = list["data"].as_array().unwrap_or(&empty);
    let content = html! {
        h1 { "Events" }
        form.card.search method="get" action=(format!("{base}/events")) role="search" {
            (field("Event id", "id", "text", "", None))
            (field("Event type", "eventType", "text", param("eventType").unwrap_or(""), error_of("eventType").as_deref()))
            (field("Since (UTC)", "since", "datetime-local", param("since").unwrap_or(""), error_of("since").as_deref()))
            (field("Until (UTC)", "until", "datetime-local", param("until").unwrap_or(""), error_of("until").as_deref()))
            button type="submit" { "Search" }
        }
        @if let Some((field, detail)) = error.as_ref().filter(|(f, _)| !["eventType", "since", "until"].contains(&f.as_str())) {
            p.error role="alert" { (field) ": " (detail) }
        }
        @if items.is_empty() {
            p.muted { "No events match." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Created" } th { "Type" } th { "Entity" } th { "Id" } } }
                    tbody {
                        @for event in items {
                            tr {
                                td { (when(&event["createdAt"])) }
                                td { (text(event, "eventType")) }
                                td.mono { (text(event, "entityId")) }
                                td.mono { a href=(format!("{base}/events/{}", text(event, "id"))) { (text(event, "id")) } }
                            }
                        }
                    }
                }
            }
        }
        (next_link(&list, &here))
    };
    Ok(Reply::Html(StatusCode::OK, "Events".into(), content))
}

pub async fn detail(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let id = encode(&ctx.id);
    let event = ctx.get(&format!("/v1/events/{id}")).await?["data"].clone();
    let deliveries = ctx
        .get(&format!(
            "/v1/events/{id}/deliveries?{}",
            query(&[
                ("limit", Some("50")),
                ("cursor", ctx.param("cursor").as_deref())
            ])
        ))
        .await?;
    let content = html! {
        h1 { "Event" }
        p.mono { (ctx.id) }
        dl.facts {
            dt { "Type" } dd { (text(&event, "eventType")) }
            dt { "Entity" } dd.mono { (text(&event, "entityId")) }
            dt { "Created" } dd { (when(&event["createdAt"])) }
            dt { "Deliveries you can see" } dd { (event["deliveryCount"].as_u64().unwrap_or(0)) }
        }
        h2 { "Payload" }
        pre.payload { (pretty(&event["data"])) }
        h2 { "Deliveries" }
        (super::deliveries::table(ctx.base, &deliveries["data"]))
        (next_link(&deliveries, &format!("{}/events/{id}", ctx.base)))
    };
    Ok(Reply::Html(StatusCode::OK, "Event".into(), content))
}

/// The catalog: every event type, what it means and the scope that reads it (an open
/// catalog lists only hookd's own types).
pub async fn catalog(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let list = ctx.get("/v1/event-types?limit=500").await?;
    let empty = Vec::new();
    let items = list["data"].as_array().unwrap_or(&empty);
    let content = html! {
        h1 { "Event types" }
        div.table-wrap {
            table {
                thead { tr { th { "Type" } th { "Description" } th { "Read scope" } } }
                tbody {
                    @for t in items {
                        tr {
                            td.mono { (text(t, "name")) }
                            td { (text(t, "description")) }
                            td.mono { (text(t, "scope")) }
                        }
                    }
                }
            }
        }
        (next_link(&list, &format!("{}/event-types", ctx.base)))
    };
    Ok(Reply::Html(StatusCode::OK, "Event types".into(), content))
}

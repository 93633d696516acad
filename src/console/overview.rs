//! The overview: attempts per minute or hour, success rate, p50/p95 latency and the
//! failing subscriptions over the last hour, day or week, from `GET /v1/stats` (so the
//! figures cover exactly what the session sees), drawn as SVG on the server: no script,
//! no inline style (the bars' colours come from console.css classes).

use hyper::StatusCode;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::text;
use super::{Ctx, Reply};
use crate::api::ApiError;

/// The chart's drawing box (SVG user units; it scales with the page).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

pub async fn page(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let base = ctx.base;
    let window = crate::api::query_pairs(ctx.query.as_deref())
        .find(|(key, _)| *key == "window")
        .map(|(_, value)| value)
        .filter(|w| ["hour", "day", "week"].contains(&w.as_str()))
        .unwrap_or_else(|| "hour".into());
    // A session that may not read subscriptions sees the links alone.
    let stats = match ctx.get(&format!("/v1/stats?window={window}")).await {
        Ok(body) => Some(body["data"].clone()),
        Err(ApiError::Forbidden(_)) => None,
        Err(error) => return Err(error),
    };
    let content = html! {
        h1 { @if ctx.caller.is_portal() { "Webhooks of " (ctx.caller.entity) } @else { "hookd console" } }
        @if let Some(stats) = &stats {
            nav.windows aria-label="Period" {
                @for w in ["hour", "day", "week"] {
                    @if w == window { strong { "Last " (w) } } @else {
                        a href=(format!("{base}?window={w}")) { "Last " (w) }
                    }
                }
            }
            (figures(stats))
            (charts(stats))
            (failing(base, stats))
        }
        ul.cards {
            li { a href=(format!("{base}/subscriptions")) { "Subscriptions" } " — endpoints, their status and last outcome." }
            li { a href=(format!("{base}/events")) { "Events" } " — search by type, time or id." }
            li { a href=(format!("{base}/deliveries")) { "Deliveries" } " — by subscription and state, with every attempt." }
        }
        @if !ctx.allows("GET", "/subscriptions/new") {
            p.muted { "This session cannot create or change subscriptions." }
        }
    };
    Ok(Reply::Html(StatusCode::OK, "Overview".into(), content))
}

fn figures(stats: &Value) -> Markup {
    let totals = &stats["totals"];
    html! {
        dl.facts.totals {
            dt { "Attempts" } dd { (number(&totals["attempts"])) }
            dt { "Succeeded" } dd { (number(&totals["succeeded"])) " (" (rate(&totals["successRate"])) ")" }
            dt { "Failed" } dd { (number(&totals["failed"])) }
            dt { "Latency p50 / p95" } dd { (latency(&totals["latencyP50Ms"])) " / " (latency(&totals["latencyP95Ms"])) }
        }
    }
}

/// Attempts per period (failed ones on top, in their own colour) and latency per period.
fn charts(stats: &Value) -> Markup {
    let slots = slots(stats);
    let per = if stats["resolution"] == "minute" {
        "minute"
    } else {
        "hour"
    };
    let most = slots.iter().map(|s| s.attempts).max().unwrap_or(0).max(1);
    let slowest = slots.iter().filter_map(|s| s.p95).max().unwrap_or(0).max(1);
    let step = WIDTH / slots.len().max(1) as f64;
    let bar = (step * 0.8).max(1.0);
    let view = format!("0 0 {WIDTH} {HEIGHT}");
    let attempts_label = format!(
        "Attempts per {per}: {} periods, at most {most} in one",
        slots.len()
    );
    let latency_label = format!("Latency p50 and p95 per {per}, up to {slowest} ms");
    let height = |value: u64, top: u64| HEIGHT * value as f64 / top as f64;
    html! {
        figure.chart {
            figcaption { "Attempts per " (per) " (failed on top)" }
            svg viewBox=(view) role="img" aria-label=(attempts_label) preserveAspectRatio="none" {
                @for (i, s) in slots.iter().enumerate() {
                    @let x = i as f64 * step;
                    @let ok = height(s.attempts - s.failed, most);
                    @let bad = height(s.failed, most);
                    rect.ok x=(x) y=(HEIGHT - ok) width=(bar) height=(ok) {}
                    rect.bad x=(x) y=(HEIGHT - ok - bad) width=(bar) height=(bad) {}
                }
            }
        }
        figure.chart {
            figcaption { "Latency per " (per) ": p50 and p95" }
            svg viewBox=(view) role="img" aria-label=(latency_label) preserveAspectRatio="none" {
                @for (i, s) in slots.iter().enumerate() {
                    @let x = i as f64 * step;
                    @if let (Some(p50), Some(p95)) = (s.p50, s.p95) {
                        @let high = height(p95, slowest);
                        @let low = height(p50, slowest);
                        rect.p95 x=(x) y=(HEIGHT - high) width=(bar) height=(high) {}
                        rect.p50 x=(x) y=(HEIGHT - low) width=(bar) height=(low) {}
                    }
                }
            }
        }
    }
}

fn failing(base: &str, stats: &Value) -> Markup {
    let empty = Vec::new();
    let rows = stats["failing"].as_array().unwrap_or(&empty);
    html! {
        h2 { "Failing endpoints" }
        @if rows.is_empty() {
            p.muted { "No failed attempts in this period." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Subscription" } th { "Failed" } th { "Attempts" } th { "Success rate" } th { "p95" } } }
                    tbody {
                        @for row in rows {
                            @let id = text(row, "subscriptionId");
                            tr {
                                td.mono { a href=(format!("{base}/subscriptions/{id}")) { (id) } }
                                td { (number(&row["failed"])) }
                                td { (number(&row["attempts"])) }
                                td { (rate(&row["successRate"])) }
                                td { (latency(&row["latencyP95Ms"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One bar of a chart: a period of the window, with or without attempts.
#[derive(Default, Clone, Copy)]
struct Slot {
    attempts: u64,
    failed: u64,
    p50: Option<u64>,
    p95: Option<u64>,
}

/// Every period of the window, oldest first: the series holds only those with attempts.
fn slots(stats: &Value) -> Vec<Slot> {
    let period_ms: u64 = if stats["resolution"] == "minute" {
        60_000
    } else {
        3_600_000
    };
    let ms = |field: &Value| {
        field
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    };
    let from = ms(&stats["from"]);
    let until = ms(&stats["until"]).max(from);
    // At most a week of hours or an hour of minutes (the API's windows); bounded anyway.
    let count = (until.saturating_sub(from) / period_ms + 1).min(168) as usize;
    let mut slots = vec![Slot::default(); count];
    for point in stats["series"].as_array().into_iter().flatten() {
        let index = (ms(&point["start"]).saturating_sub(from) / period_ms) as usize;
        if let Some(slot) = slots.get_mut(index) {
            *slot = Slot {
                attempts: point["attempts"].as_u64().unwrap_or(0),
                failed: point["failed"].as_u64().unwrap_or(0),
                p50: point["latencyP50Ms"].as_u64(),
                p95: point["latencyP95Ms"].as_u64(),
            };
        }
    }
    slots
}

fn number(value: &Value) -> String {
    value.as_u64().map_or_else(|| "—".into(), |n| n.to_string())
}

fn rate(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "—".into(), |r| format!("{:.1} %", r * 100.0))
}

/// A percentile as its bucket's bound; none without attempts or beyond 15 s.
fn latency(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| "—".into(), |ms| format!("≤ {ms} ms"))
}

//! The frame around every console page (head, navigation, sign-out, the one-time
//! notice) and the small pieces pages share. maud escapes every value it renders, so a
//! description or payload holding `<script>` is shown as text.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// Who is signed in, the session's CSRF token (for the sign-out form) and its notice.
pub struct Chrome {
    /// `/console` or `/portal`: where the pages' links lead.
    pub base: &'static str,
    /// The admin token: the entity and key pages are linked.
    pub operator: bool,
    pub who: String,
    pub csrf: String,
    pub notice: Option<String>,
}

pub fn page(chrome: Option<&Chrome>, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookd" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href=(chrome.map_or("/console", |c| c.base)) { "hookd" }
                    @if let Some(chrome) = chrome {
                        nav aria-label="Main" {
                            a href=(format!("{}/subscriptions", chrome.base)) { "Subscriptions" }
                            a href=(format!("{}/events", chrome.base)) { "Events" }
                            a href=(format!("{}/deliveries", chrome.base)) { "Deliveries" }
                            a href=(format!("{}/event-types", chrome.base)) { "Event types" }
                            @if chrome.operator {
                                a href="/console/entities" { "Entities" }
                                a href="/console/keys" { "API keys" }
                            }
                        }
                        form.sign-out method="post" action=(format!("{}/sign-out", chrome.base)) {
                            (csrf(&chrome.csrf))
                            span.who { (chrome.who) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    @if let Some(notice) = chrome.and_then(|c| c.notice.as_deref()) {
                        p.notice role="status" { (notice) }
                    }
                    (content)
                }
            }
        }
    }
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A one-button form posting to `action` (pause, delete, retry, ...).
pub fn button_form(action: &str, token: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(token))
            button type="submit" { (label) }
        }
    }
}

/// A delivery state or subscription status as a labelled badge.
pub fn badge(value: &str) -> Markup {
    let class = match value {
        "SUCCEEDED" | "ACTIVE" => "badge ok",
        "FAILED" | "DISABLED" => "badge bad",
        "RETRYING" | "PENDING" => "badge warn",
        _ => "badge",
    };
    html! { span class=(class) { (value) } }
}

/// A JSON string field, or "" when absent.
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

/// An RFC 3339 time as the API gives it, shorter: `2026-01-31 12:00:00.000Z`.
pub fn when(value: &Value) -> String {
    value.as_str().unwrap_or("—").replacen('T', " ", 1)
}

/// JSON shown indented, as text.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A "next page" link when the list has more.
pub fn next_link(list: &Value, base: &str) -> Markup {
    html! {
        @if let Some(next) = list["nextCursor"].as_str() {
            p.pager {
                a rel="next" href=(format!("{base}{}cursor={}", if base.contains('?') { "&" } else { "?" }, super::form::encode(next))) { "Next page →" }
            }
        }
    }
}

/// A text field with its label and, when the API refused it, the message beside it.
pub fn field(label: &str, name: &str, kind: &str, value: &str, error: Option<&str>) -> Markup {
    let id = format!("f-{}", name.replace('.', "-"));
    let error_id = format!("{id}-error");
    html! {
        div.field.invalid[error.is_some()] {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value)
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| error_id.as_str())];
            @if let Some(error) = error {
                p.field-error id=(error_id) { (error) }
            }
        }
    }
}

/// A `datetime-local` value (`2026-01-31T12:00`, taken as UTC) as RFC 3339.
pub fn utc(local: &str) -> String {
    match local.len() {
        16 => format!("{local}:00Z"),
        19 => format!("{local}Z"),
        _ => local.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let markup = page(None, "<t>", html! { p { ("<script>alert(1)</script>") } });
        let out = markup.into_string();
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(out.contains("<title>&lt;t&gt; · hookd</title>"), "{out}");
    }

    #[test]
    fn local_times_become_utc() {
        assert_eq!(utc("2026-01-31T12:00"), "2026-01-31T12:00:00Z");
        assert_eq!(utc("2026-01-31T12:00:05"), "2026-01-31T12:00:05Z");
    }
}

//! The customer portal's way in: a one-time link (`POST /v1/portal/sessions`) opens a
//! session for one entity's subtree with the link's permissions, then the console's
//! own pages serve it under `/portal`. Opening takes two steps, a page and its form,
//! so that the session cookie is set by a same-site request (a link followed from an
//! email is a cross-site navigation, which would not send a `SameSite=Strict` cookie
//! on the redirect after it) and so that the form carries a CSRF token like every
//! other. When `console.frame_ancestors` allows embedding, the cookie is
//! `SameSite=None; Partitioned` (a cross-site frame sends no stricter cookie); every
//! form still needs its CSRF token.

use std::time::Instant;

use http::StatusCode;
use maud::html;

use super::session::{OPEN_COOKIE, PORTAL_COOKIE};
use super::sign_in::{pre_session_form, set_cookie};
use super::{Console, Page, html, layout, redirect};
use crate::api::{ApiError, AppState, Caller, Grant, Request};

/// The page behind a portal link: a button that opens the session.
pub async fn open_form(console: &Console, token: &str) -> Page {
    match console.api.portal.waiting(token).await {
        Ok(true) => {}
        Ok(false) => return used(),
        Err(error) => return super::error_page(None, &ApiError::from(error)),
    }
    let csrf = match console.sessions.token() {
        Ok(csrf) => csrf,
        Err(error) => return super::error_page(None, &ApiError::internal(error)),
    };
    let content = html! {
        h1 { "Your webhooks" }
        form.card method="post" action=(format!("/portal/open/{token}")) {
            (layout::csrf(&csrf))
            p { "This link opens the webhook portal once." }
            button type="submit" { "Open the portal" }
        }
    };
    let mut page = html(
        StatusCode::OK,
        layout::page(None, "Open the portal", content),
    );
    set_cookie(
        &mut page,
        &format!(
            "{OPEN_COOKIE}={csrf}; HttpOnly; Secure; {}; Path=/portal/open; Max-Age=3600",
            same_site(console)
        ),
    );
    page
}

pub async fn open(console: &Console, token: &str, request: Request) -> Page {
    if let Err(refused) = pre_session_form(request, OPEN_COOKIE).await {
        return refused;
    }
    let grant = match console.api.portal.redeem(token).await {
        Ok(Some(grant)) => grant,
        Ok(None) => return used(),
        Err(error) => return super::error_page(None, &ApiError::from(error)),
    };
    // The session ends when the link would have. Should opening it fail now, the link
    // is spent all the same: a second session from one link is the worse outcome.
    let life = grant.expires.saturating_duration_since(Instant::now());
    let opened = console
        .sessions
        .open_for(grant.credential.clone(), Some(grant.clone()), life)
        .await;
    let (value, _) = match opened {
        Ok(opened) => opened,
        Err(error) => return super::error_page(None, &error),
    };
    let seconds = life.as_secs();
    tracing::info!(entity = %grant.entity, "portal link opened");
    let mut page = redirect("/portal");
    set_cookie(
        &mut page,
        &format!(
            "{PORTAL_COOKIE}={value}; HttpOnly; Secure; {}; Path=/portal; Max-Age={seconds}",
            same_site(console)
        ),
    );
    page
}

/// A link opened before, expired or never made: all look the same.
fn used() -> Page {
    super::error_page(
        None,
        &ApiError::NotFound("portal link (it opens once and expires; ask for a new one)"),
    )
}

fn same_site(console: &Console) -> &'static str {
    if console.api.config.console.frame_ancestors.is_empty() {
        "SameSite=Strict"
    } else {
        "SameSite=None; Partitioned"
    }
}

/// The portal session's caller: the link's entity, the portal permissions, and of the
/// link maker's scopes only those the permissions need (`read`: reading, and the
/// catalog's read scopes; any other: `subscriptions:write` too).
pub fn narrow(state: &AppState, maker: &Caller, grant: &Grant) -> Caller {
    let writes = grant.permissions.iter().any(|p| p != "read");
    let reads = grant.permissions.iter().any(|p| p == "read") || writes;
    let mut scopes: Vec<String> = crate::api::catalog_scopes(&state.config)
        .into_values()
        .collect();
    scopes.extend([
        "subscriptions:read".to_owned(),
        "subscriptions:write".to_owned(),
    ]);
    scopes.sort_unstable();
    scopes.dedup();
    let keep = |scope: &str| match scope {
        "subscriptions:write" => writes,
        _ => reads,
    };
    maker.for_portal(
        grant.entity.clone(),
        keep,
        &scopes,
        grant.permissions.clone(),
    )
}

//! Signing in and out. The sign-in form is protected from cross-site posts by a token
//! in a cookie of its own, repeated in the form (there is no session yet to hold it).
//! A session opens only for the admin token or a current API key, and its cookie is
//! `HttpOnly; Secure; SameSite=Strict; Path=/console`.

use http::{HeaderValue, StatusCode, header};
use maud::html;

use super::session::{COOKIE, SIGN_IN_COOKIE, cookie, same_token};
use super::{Console, Ctx, Page, form, html, layout, redirect};
use crate::api::{ApiError, Request};

/// How long the sign-in form's token lives.
const SIGN_IN_TTL_SECONDS: u64 = 3600;

pub fn form(console: &Console, error: Option<&str>) -> Page {
    let token = match console.sessions.token() {
        Ok(token) => token,
        Err(error) => return super::error_page(None, &ApiError::internal(error)),
    };
    let content = html! {
        h1 { "Sign in to hookd" }
        form.card method="post" action="/console/sign-in" {
            (layout::csrf(&token))
            div.field.invalid[error.is_some()] {
                label for="token" { "Admin token or API key" }
                input id="token" name="token" type="password" autocomplete="off" required
                    aria-describedby=[error.map(|_| "token-error")];
                @if let Some(error) = error {
                    p.field-error id="token-error" role="alert" { (error) }
                }
            }
            button type="submit" { "Sign in" }
        }
        p.muted { "The session has the token's entity and scopes, and ends when the key is revoked." }
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut page = html(status, layout::page(None, "Sign in", content));
    set_cookie(
        &mut page,
        &format!(
            "{SIGN_IN_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/console/sign-in; Max-Age={SIGN_IN_TTL_SECONDS}"
        ),
    );
    page
}

pub async fn submit(console: &Console, request: Request) -> Page {
    let submitted = match pre_session_form(request, SIGN_IN_COOKIE).await {
        Ok(submitted) => submitted,
        Err(page) => return page,
    };
    let token = submitted.get("token").unwrap_or_default();
    let Some(credential) = crate::api::lasting_credential(&console.api, token) else {
        return form(
            console,
            Some("not a valid admin token or API key (a revoked key is refused)"),
        );
    };
    let (cookie, _) = match console.sessions.open(credential).await {
        Ok(opened) => opened,
        Err(error) => return super::error_page(None, &error),
    };
    let ttl = console.sessions.ttl().as_secs();
    let mut page = redirect("/console");
    set_cookie(
        &mut page,
        &format!(
            "{COOKIE}={cookie}; HttpOnly; Secure; SameSite=Strict; Path=/console; Max-Age={ttl}"
        ),
    );
    set_cookie(
        &mut page,
        &format!(
            "{SIGN_IN_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/console/sign-in; Max-Age=0"
        ),
    );
    page
}

/// A form posted before any session (sign-in, opening a portal link): read, and its
/// CSRF field checked against the cookie `cookie_name` its page set; 403 otherwise.
pub async fn pre_session_form(request: Request, cookie_name: &str) -> Result<form::Form, Page> {
    let expected = request
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| cookie(h, cookie_name))
        .map(str::to_owned);
    let submitted = form::read(request)
        .await
        .map_err(|error| super::error_page(None, &ApiError::BadRequest(error.to_string())))?;
    let csrf_ok = matches!(
        (submitted.raw("csrf"), &expected),
        (Some(token), Some(expected)) if same_token(token, expected)
    );
    if !csrf_ok {
        return Err(super::error_page(
            None,
            &ApiError::Forbidden(
                "the form's CSRF token is missing or stale; load its page again".into(),
            ),
        ));
    }
    Ok(submitted)
}

/// Ends the session on every node; if the store cannot say so, the page says it failed
/// and the cookie stays (a session left open must not look closed).
pub async fn sign_out(ctx: &Ctx<'_>) -> Page {
    if let Err(error) = ctx.console.sessions.close(&ctx.cookie).await {
        return super::error_page(None, &ApiError::from(error));
    }
    let (name, path, to) = match ctx.base {
        "/portal" => (super::session::PORTAL_COOKIE, "/portal", "/portal"),
        _ => (COOKIE, "/console", "/console/sign-in"),
    };
    let mut page = redirect(to);
    set_cookie(
        &mut page,
        &format!("{name}=; HttpOnly; Secure; SameSite=Strict; Path={path}; Max-Age=0"),
    );
    page
}

pub fn set_cookie(page: &mut Page, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        page.headers_mut().append(header::SET_COOKIE, value);
    }
}

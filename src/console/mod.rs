//! The web console at `/console/`: HTML pages rendered on the server (maud), signed in
//! with the admin token or an API key. Every page and form is a route of the API's
//! table (`api::ROUTES`, surface `Console`) and passes the same `api::permit` before
//! its handler; handlers then call the API in process (`api::call`) as the session's
//! caller, so what a page shows and does is what the API allows that credential:
//! scopes, visibility (404 outside the caller's subtree) and validation.
//!
//! Requests enter from `server` for paths under `/console`; the answer is a page, a
//! redirect (303, after a form) or an asset compiled into the binary. Every answer
//! carries the security headers of `headers`; no page holds inline script or style.

mod assets;
mod deliveries;
mod events;
mod form;
mod headers;
mod layout;
mod session;
mod sign_in;
mod subscription_form;
mod subscriptions;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use maud::Markup;
use serde_json::Value;

use crate::api::{self, ApiError, AppState, Called, Caller, Request, Surface};
pub use session::MAX_SESSIONS;
use session::{Session, Sessions};

pub type Page = Response<Full<Bytes>>;

/// Whether a request path is the console's.
pub fn owns(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

pub struct Console {
    api: Arc<AppState>,
    sessions: Sessions,
}

/// A signed-in request: who it acts as and its session.
pub struct Ctx<'a> {
    console: &'a Console,
    pub caller: Caller,
    session: Session,
    cookie: String,
    /// The route template's `{id}` segment, or empty.
    pub id: String,
    pub query: Option<String>,
    pub form: form::Form,
}

/// What a handler answers.
pub enum Reply {
    /// A page: status, title, content (the layout adds the frame around it).
    Html(StatusCode, String, Markup),
    /// 303 to another page, after a form.
    Redirect(String),
}

impl Console {
    pub fn new(api: Arc<AppState>) -> Self {
        let sessions = Sessions::new(api.config.console.session_ttl, MAX_SESSIONS);
        Self { api, sessions }
    }

    /// Answers one request under `/console`.
    pub async fn respond(&self, request: Request) -> Page {
        let started = Instant::now();
        let mut page = self.route(request).await;
        headers::secure(&mut page, started);
        page
    }

    async fn route(&self, request: Request) -> Page {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let route = match api::lookup(request.method(), &segments) {
            Ok(route) if route.surface == Surface::Console => route,
            Ok(_) => return error_page(None, &ApiError::NotFound("page")),
            Err(error) => return error_page(None, &error),
        };
        let id = route.id(&segments).to_owned();
        match (route.method, route.path) {
            ("GET", "/console/assets/{id}") => return assets::serve(&id),
            ("GET", "/console/sign-in") => return sign_in::form(self, None),
            ("POST", "/console/sign-in") => return sign_in::submit(self, request).await,
            _ => {}
        }
        // Every other route needs a session, then what the route table says.
        let cookie = request
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| session::cookie(h, session::COOKIE))
            .map(str::to_owned);
        let signed_in = cookie.and_then(|cookie| {
            let session = self.sessions.get(&cookie)?;
            match api::caller_of(&self.api, &session.credential) {
                Ok(caller) => Some((cookie, session, caller)),
                // Its key was revoked: the session ends with it.
                Err(_) => {
                    self.sessions.close(&cookie);
                    None
                }
            }
        });
        let Some((cookie, session, caller)) = signed_in else {
            if request.method() == Method::GET {
                return redirect("/console/sign-in");
            }
            return error_page(None, &ApiError::Forbidden("sign in first".into()));
        };
        if let Err(error) = api::permit(route, &caller) {
            return error_page(Some(&chrome(&caller, &session)), &error);
        }
        let query = request.uri().query().map(str::to_owned);
        let form = if request.method() == Method::POST {
            match form::read(request).await {
                Ok(form) if csrf_ok(&form, &session.csrf) => form,
                Ok(_) => {
                    return error_page(
                        Some(&chrome(&caller, &session)),
                        &ApiError::Forbidden(
                            "the form's CSRF token is missing or stale; reload the page and send it again"
                                .into(),
                        ),
                    );
                }
                Err(error) => {
                    return error_page(
                        Some(&chrome(&caller, &session)),
                        &ApiError::BadRequest(error.to_string()),
                    );
                }
            }
        } else {
            form::Form::default()
        };
        let ctx = Ctx {
            console: self,
            caller,
            session,
            cookie,
            id,
            query,
            form,
        };
        let result = match (route.method, route.path) {
            ("GET", "/console") => Ok(overview(&ctx)),
            ("POST", "/console/sign-out") => return sign_in::sign_out(&ctx),
            ("GET", "/console/subscriptions") => subscriptions::list(&ctx).await,
            ("POST", "/console/subscriptions") => subscription_form::create(&ctx).await,
            ("GET", "/console/subscriptions/new") => subscription_form::new(&ctx).await,
            ("GET", "/console/subscriptions/{id}") => subscriptions::detail(&ctx).await,
            ("POST", "/console/subscriptions/{id}") => subscription_form::update(&ctx).await,
            ("GET", "/console/subscriptions/{id}/edit") => subscription_form::edit(&ctx).await,
            ("POST", "/console/subscriptions/{id}/status") => subscriptions::status(&ctx).await,
            ("POST", "/console/subscriptions/{id}/delete") => subscriptions::delete(&ctx).await,
            ("POST", "/console/subscriptions/{id}/test") => subscriptions::test(&ctx).await,
            ("POST", "/console/subscriptions/{id}/replay") => subscriptions::replay(&ctx).await,
            ("GET", "/console/events") => events::list(&ctx).await,
            ("GET", "/console/events/{id}") => events::detail(&ctx).await,
            ("GET", "/console/deliveries") => deliveries::list(&ctx).await,
            ("GET", "/console/deliveries/{id}") => deliveries::detail(&ctx).await,
            ("POST", "/console/deliveries/{id}/retry") => deliveries::retry(&ctx).await,
            _ => Err(ApiError::NotFound("page")),
        };
        match result {
            Ok(Reply::Html(status, title, content)) => {
                html(status, layout::page(Some(&ctx.chrome()), &title, content))
            }
            Ok(Reply::Redirect(to)) => redirect(&to),
            Err(error) => error_page(Some(&ctx.chrome()), &error),
        }
    }
}

fn csrf_ok(form: &form::Form, expected: &str) -> bool {
    form.raw("csrf")
        .is_some_and(|token| session::same_token(token, expected))
}

impl Ctx<'_> {
    /// Calls the API as this session's caller.
    pub async fn api(
        &self,
        method: Method,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Called, ApiError> {
        api::call(&self.console.api, &self.caller, method, target, body).await
    }

    pub async fn get(&self, target: &str) -> Result<Value, ApiError> {
        Ok(self.api(Method::GET, target, None).await?.body)
    }

    /// A query parameter of the page's URL, trimmed; `None` when absent or blank.
    pub fn param(&self, name: &str) -> Option<String> {
        crate::api::query_pairs(self.query.as_deref())
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// Leaves a message for the next page this session shows.
    pub fn notify(&self, notice: impl Into<String>) {
        self.console.sessions.notify(&self.cookie, notice.into());
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    fn chrome(&self) -> layout::Chrome {
        chrome(&self.caller, &self.session)
    }
}

fn chrome(caller: &Caller, session: &Session) -> layout::Chrome {
    layout::Chrome {
        who: if caller.is_admin() {
            "admin token".to_owned()
        } else {
            format!("API key of {}", caller.entity)
        },
        csrf: session.csrf.clone(),
        notice: session.notice.clone(),
    }
}

fn overview(ctx: &Ctx<'_>) -> Reply {
    use crate::api::Access;
    let can = |scope| api::permit(&scope_probe(scope), &ctx.caller).is_ok();
    let content = maud::html! {
        h1 { "hookd console" }
        p { "Signed in as " (ctx.chrome().who) "." }
        ul.cards {
            li { a href="/console/subscriptions" { "Subscriptions" } " — endpoints, their status and last outcome." }
            li { a href="/console/events" { "Events" } " — search by type, time or id." }
            li { a href="/console/deliveries" { "Deliveries" } " — by subscription and state, with every attempt." }
        }
        @if !can(Access::Scope("subscriptions:write")) {
            p.muted { "This credential cannot change subscriptions (no subscriptions:write)." }
        }
    };
    Reply::Html(StatusCode::OK, "Overview".into(), content)
}

/// A route that needs only `access`, to ask `permit` what the caller may do.
fn scope_probe(access: api::Access) -> api::Route {
    api::Route {
        method: "GET",
        path: "/console",
        access,
        surface: Surface::Console,
    }
}

pub fn html(status: StatusCode, markup: Markup) -> Page {
    let mut page = Response::new(Full::new(Bytes::from(markup.into_string())));
    *page.status_mut() = status;
    page.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    page
}

pub fn redirect(to: &str) -> Page {
    let mut page = Response::new(Full::new(Bytes::new()));
    *page.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        page.headers_mut().insert(header::LOCATION, location);
    }
    page
}

/// An error as a page: the API's status and detail (never a source or a secret).
fn error_page(chrome: Option<&layout::Chrome>, error: &ApiError) -> Page {
    let (status, title) = error.status_and_title();
    let detail = match error {
        ApiError::Internal(source) => {
            tracing::error!(error = %source, "console page failed");
            "something went wrong inside hookd; the log says what".into()
        }
        other => other.to_string(),
    };
    let content = maud::html! {
        h1 { (title) }
        p.error role="alert" { (detail) }
        p { a href="/console" { "Back to the console" } }
    };
    let mut page = html(status, layout::page(chrome, title, content));
    if let ApiError::MethodNotAllowed(allow) = error
        && let Ok(value) = HeaderValue::from_str(allow)
    {
        page.headers_mut().insert(header::ALLOW, value);
    }
    page
}

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
mod operator;
mod overview;
mod portal;
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

/// Whether a request path is the console's or the portal's.
pub fn owns(path: &str) -> bool {
    ["/console", "/portal"]
        .iter()
        .any(|root| path == *root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/')))
}

pub struct Console {
    api: Arc<AppState>,
    sessions: Sessions,
}

/// A signed-in request: who it acts as and its session.
pub struct Ctx<'a> {
    console: &'a Console,
    /// `/console` or `/portal`: where this surface's pages are.
    pub base: &'static str,
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
        let sessions = Sessions::new(
            api.store.clone(),
            api.config.console.session_ttl,
            MAX_SESSIONS,
        );
        Self { api, sessions }
    }

    /// Answers one request under `/console` or `/portal`.
    pub async fn respond(&self, request: Request) -> Page {
        let started = Instant::now();
        let portal = request.uri().path().starts_with("/portal");
        let mut page = self.route(request).await;
        let ancestors: &[String] = if portal {
            &self.api.config.console.frame_ancestors
        } else {
            &[]
        };
        headers::secure(&mut page, started, ancestors);
        page
    }

    async fn route(&self, request: Request) -> Page {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let route = match api::lookup(request.method(), &segments) {
            Ok(route) if route.surface != Surface::Api => route,
            Ok(_) => return error_page(None, &ApiError::NotFound("page")),
            Err(error) => return error_page(None, &error),
        };
        let id = route.id(&segments).to_owned();
        match (route.method, route.path) {
            ("GET", "/console/assets/{id}") => return assets::serve(&id),
            ("GET", "/console/sign-in") => return sign_in::form(self, None),
            ("POST", "/console/sign-in") => return sign_in::submit(self, request).await,
            ("GET", "/portal/open/{id}") => return portal::open_form(self, &id).await,
            ("POST", "/portal/open/{id}") => return portal::open(self, &id, request).await,
            _ => {}
        }
        let in_portal = route.surface == Surface::Portal;
        // Every other route needs a session of its surface, then what the table says.
        let name = if in_portal {
            session::PORTAL_COOKIE
        } else {
            session::COOKIE
        };
        let cookie = request
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| session::cookie(h, name))
            .map(str::to_owned);
        let signed_in = match cookie {
            Some(cookie) => match self.signed_in(cookie, in_portal).await {
                Ok(found) => found,
                Err(error) => return error_page(None, &ApiError::from(error)),
            },
            None => None,
        };
        let Some((cookie, session, caller)) = signed_in else {
            return match (in_portal, request.method() == Method::GET) {
                (false, true) => redirect("/console/sign-in"),
                (true, true) => error_page(
                    None,
                    &ApiError::Unauthorized(
                        "this portal session has ended; open a new portal link".into(),
                    ),
                ),
                _ => error_page(None, &ApiError::Forbidden("sign in first".into())),
            };
        };
        let base = if in_portal { "/portal" } else { "/console" };
        let frame = chrome(base, &caller, &session);
        if let Err(error) = api::permit(route, &caller) {
            return error_page(Some(&frame), &error);
        }
        let query = request.uri().query().map(str::to_owned);
        let form = if request.method() == Method::POST {
            match form::read(request).await {
                Ok(form) if csrf_ok(&form, &session.csrf) => form,
                Ok(_) => {
                    return error_page(
                        Some(&frame),
                        &ApiError::Forbidden(
                            "the form's CSRF token is missing or stale; reload the page and send it again"
                                .into(),
                        ),
                    );
                }
                // Not a form at all (another media type): no CSRF token either.
                Err(error @ form::FormError::MediaType) => {
                    return error_page(Some(&frame), &ApiError::Forbidden(error.to_string()));
                }
                Err(error) => {
                    return error_page(Some(&frame), &ApiError::BadRequest(error.to_string()));
                }
            }
        } else {
            form::Form::default()
        };
        let ctx = Ctx {
            console: self,
            base,
            caller,
            session,
            cookie,
            id,
            query,
            form,
        };
        let page = route.path.strip_prefix(base).unwrap_or_default();
        let result = match (route.method, page) {
            ("GET", "") => overview::page(&ctx).await,
            ("POST", "/sign-out") => return sign_in::sign_out(&ctx).await,
            ("GET", "/subscriptions") => subscriptions::list(&ctx).await,
            ("POST", "/subscriptions") => subscription_form::create(&ctx).await,
            ("GET", "/subscriptions/new") => subscription_form::new(&ctx).await,
            ("GET", "/subscriptions/{id}") => subscriptions::detail(&ctx).await,
            ("POST", "/subscriptions/{id}") => subscription_form::update(&ctx).await,
            ("GET", "/subscriptions/{id}/edit") => subscription_form::edit(&ctx).await,
            ("POST", "/subscriptions/{id}/status") => subscriptions::status(&ctx).await,
            ("POST", "/subscriptions/{id}/delete") => subscriptions::delete(&ctx).await,
            ("POST", "/subscriptions/{id}/test") => subscriptions::test(&ctx).await,
            ("POST", "/subscriptions/{id}/replay") => subscriptions::replay(&ctx).await,
            ("POST", "/subscriptions/{id}/secret") => subscriptions::secret(&ctx, false).await,
            ("POST", "/subscriptions/{id}/secret/rotate") => {
                subscriptions::secret(&ctx, true).await
            }
            ("GET", "/entities") => operator::entities(&ctx).await,
            ("POST", "/entities") => operator::create_entity(&ctx).await,
            ("GET", "/keys") => operator::keys(&ctx).await,
            ("POST", "/keys") => operator::create_key(&ctx).await,
            ("POST", "/keys/{id}/revoke") => operator::revoke_key(&ctx).await,
            ("GET", "/events") => events::list(&ctx).await,
            ("GET", "/events/{id}") => events::detail(&ctx).await,
            ("GET", "/event-types") => events::catalog(&ctx).await,
            ("GET", "/deliveries") => deliveries::list(&ctx).await,
            ("GET", "/deliveries/{id}") => deliveries::detail(&ctx).await,
            ("POST", "/deliveries/{id}/retry") => deliveries::retry(&ctx).await,
            _ => Err(ApiError::NotFound("page")),
        };
        match result {
            Ok(Reply::Html(status, title, content)) => {
                html(status, layout::page(Some(&frame), &title, content))
            }
            Ok(Reply::Redirect(to)) => redirect(&to),
            Err(error) => error_page(Some(&frame), &error),
        }
    }

    /// The session a cookie names and who it acts as. A session that no longer has a
    /// caller here (its key revoked, its entity out of reach, or of the other surface)
    /// ends, on every node.
    async fn signed_in(
        &self,
        cookie: String,
        in_portal: bool,
    ) -> Result<Option<(String, Session, Caller)>, crate::store::StoreError> {
        let Some(session) = self.sessions.get(&cookie).await? else {
            return Ok(None);
        };
        Ok(match self.caller(&session, in_portal) {
            Some(caller) => Some((cookie, session, caller)),
            None => {
                self.sessions.close(&cookie).await?;
                None
            }
        })
    }

    /// Who a session acts as now: its credential's caller, narrowed to the portal grant
    /// for a portal session. `None` once the credential is revoked, the entity is out of
    /// its reach, or the session is of the other surface.
    fn caller(&self, session: &Session, in_portal: bool) -> Option<Caller> {
        let caller = api::caller_of(&self.api, &session.credential).ok()?;
        match (&session.portal, in_portal) {
            (None, false) => Some(caller),
            (Some(grant), true) if caller.sees(grant.entity.as_str()) => {
                Some(portal::narrow(&self.api, &caller, grant))
            }
            _ => None,
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
    pub async fn notify(&self, notice: impl Into<String>) {
        self.console
            .sessions
            .notify(&self.cookie, notice.into())
            .await;
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    /// Whether this session may use the page or form `method base+suffix` (`{id}`
    /// for an id): the route table's answer, for showing only the buttons that work.
    pub fn allows(&self, method: &str, suffix: &str) -> bool {
        let path = format!("{}{suffix}", self.base);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        http::Method::from_bytes(method.as_bytes())
            .ok()
            .and_then(|method| api::lookup(&method, &segments).ok())
            .is_some_and(|route| api::permit(route, &self.caller).is_ok())
    }
}

fn chrome(base: &'static str, caller: &Caller, session: &Session) -> layout::Chrome {
    let who = match &session.portal {
        Some(grant) => format!("{} ({})", grant.entity, grant.permissions.join(", ")),
        None if caller.is_admin() => "admin token".to_owned(),
        None => format!("API key of {}", caller.entity),
    };
    layout::Chrome {
        base,
        operator: base == "/console" && caller.is_admin(),
        who,
        csrf: session.csrf.clone(),
        notice: session.notice.clone(),
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

//! The console over plain HTTPS requests (no browser): signing in as a browser would
//! (the sign-in form's token and cookie, then the session cookie) and sending pages'
//! forms with or without their CSRF token.

use bytes::Bytes;
use http_body_util::Full;

use hookd::delivery::client::BoundedResponse;

use super::{Api, WAIT};

/// A signed-in console session: its cookie and its forms' CSRF token.
pub struct ConsoleSession {
    pub cookie: String,
    pub csrf: String,
}

impl Api {
    /// One request to the console, with cookies and an optional urlencoded form.
    pub async fn page(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> BoundedResponse {
        let kind = form.map(|_| "application/x-www-form-urlencoded");
        self.send_page(method, path, cookie, kind, form.unwrap_or_default())
            .await
    }

    /// A POST with a body of another media type.
    pub async fn page_with_type(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        kind: &str,
        body: &str,
    ) -> BoundedResponse {
        self.send_page(method, path, Some(cookie), Some(kind), body)
            .await
    }

    async fn send_page(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        kind: Option<&str>,
        body: &str,
    ) -> BoundedResponse {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(kind) = kind {
            request = request.header("content-type", kind);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        self.client
            .send(request, WAIT, 4 << 20)
            .await
            .expect("hookd answers")
    }

    /// A subscription to `*` at `url` whose description and one event's payload hold
    /// `markup`: (subscription id, event id), for the escaping tests.
    pub async fn markup_everywhere(&self, url: &str, markup: &str) -> (String, String) {
        let body =
            serde_json::json!({"eventTypes": ["*"], "endpointUrl": url, "description": markup});
        let (status, body) = self.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        let sub = body["data"]["id"].as_str().unwrap().to_owned();
        let event = self
            .post_event("order.created", serde_json::json!({"note": markup}))
            .await;
        (sub, event["id"].as_str().unwrap().to_owned())
    }

    /// A portal link for `entity` with `permissions`, made with the admin token: the
    /// path of its URL.
    pub async fn portal_link(&self, entity: &str, permissions: &[&str]) -> String {
        let body = serde_json::json!({"entityId": entity, "permissions": permissions});
        let (status, body) = self.call("POST", "/v1/portal/sessions", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        let url = body["data"]["url"].as_str().unwrap();
        let path = &url[url.find("/portal/open/").expect("a portal link")..];
        path.to_owned()
    }

    /// The answer to opening a portal link (its page, then its form), as a browser.
    pub async fn open_portal_link(&self, path: &str) -> BoundedResponse {
        let page = self.page("GET", path, None, None).await;
        if page.status != 200 {
            return page;
        }
        let pre = set_cookie(&page, "hookd_open").expect("the open form's cookie");
        let csrf = csrf_of(&text(&page)).expect("a CSRF field");
        self.page(
            "POST",
            path,
            Some(&format!("hookd_open={pre}")),
            Some(&format!("csrf={csrf}")),
        )
        .await
    }

    /// A portal session for `entity` with `permissions`.
    pub async fn portal_session(&self, entity: &str, permissions: &[&str]) -> ConsoleSession {
        let link = self.portal_link(entity, permissions).await;
        let answer = self.open_portal_link(&link).await;
        assert_eq!(answer.status, 303, "{}", text(&answer));
        let value = set_cookie(&answer, "hookd_portal").expect("a portal cookie");
        let cookie = format!("hookd_portal={value}");
        let home = self.page("GET", "/portal", Some(&cookie), None).await;
        assert_eq!(home.status, 200, "{}", text(&home));
        let csrf = csrf_of(&text(&home)).expect("the sign-out form's CSRF field");
        ConsoleSession { cookie, csrf }
    }

    /// The answer to the sign-in form sent with `token`, as a browser sends it (the
    /// form's CSRF token and its cookie).
    pub async fn sign_in_answer(&self, token: &str) -> BoundedResponse {
        let form = self.page("GET", "/console/sign-in", None, None).await;
        assert_eq!(form.status, 200);
        let pre = set_cookie(&form, "hookd_sign_in").expect("a sign-in cookie");
        let csrf = csrf_of(&text(&form)).expect("a CSRF field");
        let body = format!("csrf={csrf}&token={}", encode(token));
        self.page(
            "POST",
            "/console/sign-in",
            Some(&format!("hookd_sign_in={pre}")),
            Some(&body),
        )
        .await
    }

    /// Signs in with `token` as the sign-in page does; panics if refused.
    pub async fn sign_in(&self, token: &str) -> ConsoleSession {
        let answer = self.sign_in_answer(token).await;
        assert_eq!(answer.status, 303, "{}", text(&answer));
        let session = set_cookie(&answer, "hookd_console").expect("a session cookie");
        let cookie = format!("hookd_console={session}");
        let home = self.page("GET", "/console/", Some(&cookie), None).await;
        assert_eq!(home.status, 200, "{}", text(&home));
        let csrf = csrf_of(&text(&home)).expect("the sign-out form's CSRF field");
        ConsoleSession { cookie, csrf }
    }
}

/// The value of cookie `name` set by a response.
pub fn set_cookie(response: &BoundedResponse, name: &str) -> Option<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?;
            let (key, value) = first.split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
}

/// The full `set-cookie` header that sets `name`.
pub fn set_cookie_header(response: &BoundedResponse, name: &str) -> Option<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The first CSRF token in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

pub fn text(response: &BoundedResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

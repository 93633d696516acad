//! Creating and editing a subscription. The form's fields are the API's (endpoint
//! authentication of every kind, custom headers one per line); the body goes to
//! `POST /v1/subscriptions` or `PATCH /v1/subscriptions/{id}` as is, and a refusal
//! comes back with the API's own message beside the field it names. Secrets typed in
//! are never sent back in the page.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::form::{Form, encode};
use super::layout::{csrf, field, text};
use super::{Ctx, Reply};
use crate::api::ApiError;

const AUTH_TYPES: [(&str, &str); 3] = [
    ("NONE", "None"),
    ("BASIC", "HTTP Basic"),
    ("OAUTH2_CLIENT_CREDENTIALS", "OAuth 2.0 client credentials"),
];
/// Fields that hold a secret: never rendered back into a page.
const SECRET_FIELDS: [&str; 2] = ["password", "clientSecret"];
const BASIC_FIELDS: [&str; 2] = ["username", "password"];
const OAUTH_FIELDS: [&str; 5] = [
    "clientId",
    "clientSecret",
    "tokenUrl",
    "scope",
    "tokenEndpointAuthMethod",
];
/// How a masked custom header value reads (API.md).
const MASK: &str = "****";

type Values = BTreeMap<String, String>;

/// Messages by form field; `""` is the form as a whole.
type Errors = BTreeMap<String, String>;

pub async fn new(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let mut values = Values::new();
    values.insert("eventTypes".into(), "*".into());
    values.insert("authType".into(), "NONE".into());
    Ok(render(ctx, None, &values, &Errors::new(), StatusCode::OK))
}

pub async fn edit(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let sub = current(ctx).await?;
    Ok(render(
        ctx,
        Some(&ctx.id),
        &values_of(&sub),
        &Errors::new(),
        StatusCode::OK,
    ))
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let body = match body(&ctx.form, None) {
        Ok(body) => body,
        Err(errors) => return Ok(refused(ctx, None, errors)),
    };
    match ctx
        .api(Method::POST, "/v1/subscriptions", Some(&body))
        .await
    {
        Ok(called) => {
            ctx.notify("Subscription created.").await;
            let id = encode(text(&called.body["data"], "id"));
            Ok(Reply::Redirect(format!("{}/subscriptions/{id}", ctx.base)))
        }
        Err(error) => answer_error(ctx, None, error),
    }
}

pub async fn update(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let sub = current(ctx).await?;
    let body = match body(&ctx.form, Some(&sub)) {
        Ok(body) => body,
        Err(errors) => return Ok(refused(ctx, Some(&ctx.id), errors)),
    };
    let target = format!("/v1/subscriptions/{}", encode(&ctx.id));
    match ctx.api(Method::PATCH, &target, Some(&body)).await {
        Ok(_) => {
            ctx.notify("Subscription saved.").await;
            Ok(Reply::Redirect(format!(
                "{}/subscriptions/{}",
                ctx.base,
                encode(&ctx.id)
            )))
        }
        Err(error) => answer_error(ctx, Some(&ctx.id), error),
    }
}

async fn current(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let target = format!("/v1/subscriptions/{}", encode(&ctx.id));
    Ok(ctx.get(&target).await?["data"].clone())
}

/// A validation error goes beside its field (the form shown again, 422); any other
/// error is the page's.
fn answer_error(ctx: &Ctx<'_>, editing: Option<&str>, error: ApiError) -> Result<Reply, ApiError> {
    match error {
        ApiError::Invalid { field, detail } => {
            let mut errors = Errors::new();
            errors.insert(form_field(&field).to_owned(), format!("{field}: {detail}"));
            Ok(refused(ctx, editing, errors))
        }
        ApiError::Forbidden(detail) | ApiError::Conflict(detail) => {
            let mut errors = Errors::new();
            errors.insert(String::new(), detail);
            Ok(refused(ctx, editing, errors))
        }
        other => Err(other),
    }
}

fn refused(ctx: &Ctx<'_>, editing: Option<&str>, errors: Errors) -> Reply {
    let values: Values = OAUTH_FIELDS
        .iter()
        .chain(&BASIC_FIELDS)
        .chain(&[
            "description",
            "endpointUrl",
            "eventTypes",
            "entityId",
            "rateLimit",
            "authType",
            "customHeaders",
            "customHeadersOriginal",
        ])
        .filter(|name| !SECRET_FIELDS.contains(name))
        .filter_map(|name| Some(((*name).to_owned(), ctx.form.raw(name)?.to_owned())))
        .collect();
    render(
        ctx,
        editing,
        &values,
        &errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
}

/// The form field an API error names: `endpointAuth.credentials.tokenUrl` is the
/// `tokenUrl` field, `customHeaders.x-key` and `eventTypes[2]` their text boxes.
fn form_field(api_field: &str) -> &str {
    if let Some(credential) = api_field.strip_prefix("endpointAuth.credentials.") {
        return credential;
    }
    if api_field.starts_with("endpointAuth") {
        return "authType";
    }
    let end = api_field.find(['.', '[']).unwrap_or(api_field.len());
    &api_field[..end]
}

/// The form's values from the API's view of a subscription (secrets are not in it).
fn values_of(sub: &Value) -> Values {
    let mut values = Values::new();
    for key in ["description", "endpointUrl"] {
        values.insert(key.into(), text(sub, key).into());
    }
    values.insert("eventTypes".into(), super::subscriptions::types(sub));
    if let Some(rate) = sub["rateLimit"].as_u64() {
        values.insert("rateLimit".into(), rate.to_string());
    }
    let auth = &sub["endpointAuth"];
    values.insert("authType".into(), text(auth, "type").into());
    if let Some(credentials) = auth["credentials"].as_object() {
        for (key, value) in credentials {
            if let Some(value) = value.as_str() {
                values.insert(key.clone(), value.into());
            }
        }
    }
    let headers = headers_text(&sub["customHeaders"]);
    values.insert("customHeadersOriginal".into(), headers.clone());
    values.insert("customHeaders".into(), headers);
    values
}

fn headers_text(headers: &Value) -> String {
    headers
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The API body of a form: everything for a create; for an edit (`current` given), the
/// fields as they now read, with endpoint authentication and custom headers only when
/// they were changed (the API replaces both whole).
fn body(form: &Form, current: Option<&Value>) -> Result<Value, Errors> {
    let editing = current.is_some();
    let mut body = Map::new();
    let optional = |name: &str| match form.get(name) {
        Some(value) => Some(Value::String(value.to_owned())),
        None if editing => Some(Value::Null),
        None => None,
    };
    if let Some(url) = form.get("endpointUrl") {
        body.insert("endpointUrl".into(), url.into());
    } else if !editing {
        body.insert("endpointUrl".into(), "".into());
    }
    let types: Vec<Value> = form
        .get("eventTypes")
        .unwrap_or_default()
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Value::from)
        .collect();
    body.insert("eventTypes".into(), Value::Array(types));
    if let Some(description) = optional("description") {
        body.insert("description".into(), description);
    }
    if let Some(rate) = optional("rateLimit") {
        // A number when it reads as one; otherwise as typed, for the API to refuse.
        let rate = match rate.as_str().map(str::parse::<u64>) {
            Some(Ok(n)) => Value::from(n),
            _ => rate,
        };
        body.insert("rateLimit".into(), rate);
    }
    if !editing && let Some(entity) = form.get("entityId") {
        body.insert("entityId".into(), entity.into());
    }
    let auth = endpoint_auth(form);
    let auth_changed = match current {
        None => true,
        Some(sub) => {
            let before = values_of(sub);
            let typed = |name: &str| form.get(name).unwrap_or_default().to_owned();
            typed("authType") != before.get("authType").cloned().unwrap_or_default()
                || SECRET_FIELDS.iter().any(|name| form.get(name).is_some())
                || BASIC_FIELDS
                    .iter()
                    .chain(&OAUTH_FIELDS)
                    .filter(|name| !SECRET_FIELDS.contains(name))
                    .any(|name| typed(name) != before.get(*name).cloned().unwrap_or_default())
        }
    };
    if auth_changed {
        body.insert("endpointAuth".into(), auth);
    }
    let headers = form.raw("customHeaders").unwrap_or_default().trim();
    let original = form.raw("customHeadersOriginal").map(str::trim);
    if !editing || original != Some(headers) {
        match parse_headers(headers)? {
            Some(parsed) => body.insert("customHeaders".into(), parsed),
            None if editing => body.insert("customHeaders".into(), Value::Null),
            None => None,
        };
    }
    Ok(Value::Object(body))
}

fn endpoint_auth(form: &Form) -> Value {
    let take = |names: &[&str]| -> Map<String, Value> {
        names
            .iter()
            .filter_map(|name| {
                let value = if SECRET_FIELDS.contains(name) {
                    form.raw(name).filter(|v| !v.is_empty())
                } else {
                    form.get(name)
                };
                Some(((*name).to_owned(), Value::from(value?)))
            })
            .collect()
    };
    match form.get("authType").unwrap_or("NONE") {
        "BASIC" => json!({"type": "BASIC", "credentials": take(&BASIC_FIELDS)}),
        "OAUTH2_CLIENT_CREDENTIALS" => {
            json!({"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": take(&OAUTH_FIELDS)})
        }
        other => json!({"type": other}),
    }
}

/// `name: value` lines as the API's object; `None` when there are none.
fn parse_headers(text: &str) -> Result<Option<Value>, Errors> {
    let fail = |message: String| {
        let mut errors = Errors::new();
        errors.insert("customHeaders".into(), message);
        errors
    };
    let mut headers = Map::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(fail(format!(
                "\"{line}\": write each header as name: value"
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        if value == MASK {
            return Err(fail(format!(
                "{name}: its value is hidden (****); type it again or remove the line"
            )));
        }
        if headers.insert(name.to_owned(), value.into()).is_some() {
            return Err(fail(format!("{name}: given twice")));
        }
    }
    Ok((!headers.is_empty()).then_some(Value::Object(headers)))
}

fn render(
    ctx: &Ctx<'_>,
    editing: Option<&str>,
    values: &Values,
    errors: &Errors,
    status: StatusCode,
) -> Reply {
    let value = |name: &str| values.get(name).map_or("", String::as_str);
    let error = |name: &str| errors.get(name).map(String::as_str);
    let (title, action) = match editing {
        Some(id) => (
            "Edit subscription",
            format!("{}/subscriptions/{}", ctx.base, encode(id)),
        ),
        None => ("New subscription", format!("{}/subscriptions", ctx.base)),
    };
    let auth_type = value("authType");
    let content = html! {
        h1 { (title) }
        @if let Some(id) = editing { p.mono { (id) } }
        @if let Some(general) = error("") { p.error role="alert" { (general) } }
        form.card method="post" action=(action) novalidate {
            (csrf(ctx.csrf()))
            (field("Endpoint URL", "endpointUrl", "url", value("endpointUrl"), error("endpointUrl")))
            (field("Event types (comma separated; * for all)", "eventTypes", "text", value("eventTypes"), error("eventTypes")))
            (field("Description", "description", "text", value("description"), error("description")))
            (field("Rate limit (deliveries per second, optional)", "rateLimit", "text", value("rateLimit"), error("rateLimit")))
            @if editing.is_none() {
                (field("Entity (optional: yours or one below it)", "entityId", "text", value("entityId"), error("entityId")))
            }
            div.field.invalid[error("authType").is_some()] {
                label for="f-authType" { "Endpoint authentication" }
                select id="f-authType" name="authType" data-auth-select {
                    @for (kind, label) in AUTH_TYPES {
                        option value=(kind) selected[auth_type == kind] { (label) }
                    }
                }
                @if let Some(e) = error("authType") { p.field-error { (e) } }
            }
            (auth_fields(editing.is_some(), &value, &error))
            div.field.invalid[error("customHeaders").is_some()] {
                label for="f-customHeaders" { "Custom headers (one per line, name: value)" }
                textarea id="f-customHeaders" name="customHeaders" rows="4"
                    aria-describedby=[error("customHeaders").map(|_| "f-customHeaders-error")] { (value("customHeaders")) }
                @if let Some(e) = error("customHeaders") { p.field-error id="f-customHeaders-error" { (e) } }
            }
            @if editing.is_some() {
                input type="hidden" name="customHeadersOriginal" value=(value("customHeadersOriginal"));
            }
            button type="submit" { @if editing.is_some() { "Save" } @else { "Create subscription" } }
        }
    };
    Reply::Html(status, title.into(), content)
}

fn auth_fields<'a>(
    editing: bool,
    value: &dyn Fn(&str) -> &'a str,
    error: &dyn Fn(&str) -> Option<&'a str>,
) -> Markup {
    let secret_hint = if editing {
        " (leave empty to keep it, unless you change the others)"
    } else {
        ""
    };
    html! {
        fieldset data-auth="BASIC" {
            legend { "HTTP Basic" }
            (field("Username", "username", "text", value("username"), error("username")))
            (field(&format!("Password{secret_hint}"), "password", "password", "", error("password")))
        }
        fieldset data-auth="OAUTH2_CLIENT_CREDENTIALS" {
            legend { "OAuth 2.0 client credentials" }
            (field("Client id", "clientId", "text", value("clientId"), error("clientId")))
            (field(&format!("Client secret{secret_hint}"), "clientSecret", "password", "", error("clientSecret")))
            (field("Token URL", "tokenUrl", "url", value("tokenUrl"), error("tokenUrl")))
            (field("Scope (optional)", "scope", "text", value("scope"), error("scope")))
            div.field {
                label for="f-tokenEndpointAuthMethod" { "Client authentication at the token endpoint" }
                select id="f-tokenEndpointAuthMethod" name="tokenEndpointAuthMethod" {
                    @for method in ["client_secret_basic", "client_secret_post"] {
                        option value=(method) selected[value("tokenEndpointAuthMethod") == method] { (method) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_fields_map_to_form_fields() {
        assert_eq!(form_field("endpointAuth.credentials.tokenUrl"), "tokenUrl");
        assert_eq!(form_field("endpointAuth.type"), "authType");
        assert_eq!(form_field("customHeaders.x-key"), "customHeaders");
        assert_eq!(form_field("eventTypes[2]"), "eventTypes");
        assert_eq!(form_field("endpointUrl"), "endpointUrl");
    }

    #[test]
    fn a_create_form_is_the_api_body() {
        let form = Form::parse(
            "endpointUrl=https%3A%2F%2Fa.example%2Fh&eventTypes=a.b%2C+c.*&authType=OAUTH2_CLIENT_CREDENTIALS\
             &clientId=id&clientSecret=s+s&tokenUrl=https%3A%2F%2Ft.example&scope=&tokenEndpointAuthMethod=client_secret_post\
             &username=ignored&customHeaders=x-a%3A+1%0D%0Ax-b%3A2&rateLimit=5&description=",
        );
        let body = body(&form, None).unwrap();
        assert_eq!(
            body,
            json!({
                "endpointUrl": "https://a.example/h",
                "eventTypes": ["a.b", "c.*"],
                "rateLimit": 5,
                "endpointAuth": {"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": {
                    "clientId": "id", "clientSecret": "s s", "tokenUrl": "https://t.example",
                    "tokenEndpointAuthMethod": "client_secret_post"}},
                "customHeaders": {"x-a": "1", "x-b": "2"},
            })
        );
    }

    #[test]
    fn an_edit_sends_auth_and_headers_only_when_changed() {
        let sub = json!({"endpointUrl": "https://a.example", "eventTypes": ["*"],
            "endpointAuth": {"type": "BASIC", "credentials": {"username": "u"}},
            "customHeaders": {"x-key": "****"}});
        let same = "endpointUrl=https%3A%2F%2Fa.example&eventTypes=*&authType=BASIC&username=u\
                    &customHeaders=x-key%3A+****&customHeadersOriginal=x-key%3A+****";
        let body = body(&Form::parse(same), Some(&sub)).unwrap();
        assert!(body.get("endpointAuth").is_none(), "{body}");
        assert!(body.get("customHeaders").is_none(), "{body}");
        assert_eq!(body["description"], Value::Null);

        let renamed = same.replace("username=u", "username=v");
        let body = super::body(&Form::parse(&renamed), Some(&sub)).unwrap();
        assert_eq!(
            body["endpointAuth"]["credentials"],
            json!({"username": "v"})
        );

        let masked = same.replace("customHeaders=x-key", "customHeaders=x-other%3A+1%0Ax-key");
        let errors = super::body(&Form::parse(&masked), Some(&sub)).unwrap_err();
        assert!(errors["customHeaders"].contains("hidden"), "{errors:?}");
    }
}

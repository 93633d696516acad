//! `endpointAuth`: parsing and validating what a caller sends, sealing its secrets
//! under the master key (bound to the subscription id), and showing it back without
//! them.

use serde_json::{Value, json};

use super::validate::{self, Fields};
use super::{ApiError, AppState};
use crate::secret::Secret;
use crate::store::records::{EndpointAuthRecord, TokenAuthMethod};

/// Endpoint authentication as given, before sealing.
pub(super) enum AuthInput {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    OAuth2 {
        client_id: String,
        client_secret: Secret,
        token_url: String,
        scope: Option<String>,
        method: TokenAuthMethod,
    },
}

pub(super) fn parse(fields: &Fields<'_>, allow_http: bool) -> Result<Option<AuthInput>, ApiError> {
    let Some(auth) = fields.object("endpointAuth")? else {
        return Ok(None);
    };
    auth.only(&["type", "credentials"])?;
    match auth.required_str("type")? {
        "NONE" => Ok(Some(AuthInput::None)),
        "BASIC" => {
            let credentials = auth.object("credentials")?.ok_or_else(|| {
                ApiError::invalid(auth.name("credentials"), "is required for BASIC")
            })?;
            credentials.only(&["username", "password"])?;
            let username = credentials.required_str("username")?;
            let password = credentials.required_str("password")?;
            let length = username.chars().count();
            if length == 0 || length > 256 || username.contains(':') {
                return Err(ApiError::invalid(
                    credentials.name("username"),
                    "must be 1-256 characters without ':'",
                ));
            }
            if password.chars().count() > 1024 {
                return Err(ApiError::invalid(
                    credentials.name("password"),
                    "at most 1024 characters",
                ));
            }
            Ok(Some(AuthInput::Basic {
                username: username.to_owned(),
                password: Secret::new(password.to_owned()),
            }))
        }
        "OAUTH2_CLIENT_CREDENTIALS" => {
            let credentials = auth.object("credentials")?.ok_or_else(|| {
                ApiError::invalid(
                    auth.name("credentials"),
                    "is required for OAUTH2_CLIENT_CREDENTIALS",
                )
            })?;
            credentials.only(&[
                "clientId",
                "clientSecret",
                "tokenUrl",
                "scope",
                "tokenEndpointAuthMethod",
            ])?;
            let client_id = credentials.required_str("clientId")?;
            let client_secret = credentials.required_str("clientSecret")?;
            let token_url = credentials.required_str("tokenUrl")?;
            validate::text(&credentials.name("clientId"), client_id, 1, 256)?;
            validate::text(&credentials.name("clientSecret"), client_secret, 1, 1024)?;
            validate::endpoint_url(&credentials.name("tokenUrl"), token_url, allow_http)?;
            let scope = credentials.str("scope")?;
            if scope
                .is_some_and(|s| s.len() > 1024 || !s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            {
                return Err(ApiError::invalid(
                    credentials.name("scope"),
                    "must be at most 1024 printable ASCII characters",
                ));
            }
            let method = match credentials.str("tokenEndpointAuthMethod")? {
                None | Some("client_secret_basic") => TokenAuthMethod::ClientSecretBasic,
                Some("client_secret_post") => TokenAuthMethod::ClientSecretPost,
                Some(_) => {
                    return Err(ApiError::invalid(
                        credentials.name("tokenEndpointAuthMethod"),
                        "must be client_secret_basic or client_secret_post",
                    ));
                }
            };
            Ok(Some(AuthInput::OAuth2 {
                client_id: client_id.to_owned(),
                client_secret: Secret::new(client_secret.to_owned()),
                token_url: token_url.to_owned(),
                scope: scope.filter(|s| !s.is_empty()).map(str::to_owned),
                method,
            }))
        }
        _ => Err(ApiError::invalid(
            auth.name("type"),
            "must be NONE, BASIC or OAUTH2_CLIENT_CREDENTIALS",
        )),
    }
}

pub(super) fn seal(
    state: &AppState,
    owner: &str,
    auth: AuthInput,
) -> Result<EndpointAuthRecord, ApiError> {
    Ok(match auth {
        AuthInput::None => EndpointAuthRecord::None,
        AuthInput::Basic { username, password } => EndpointAuthRecord::Basic {
            username,
            sealed_password: state.sealer.seal(owner.as_bytes(), &password)?,
        },
        AuthInput::OAuth2 {
            client_id,
            client_secret,
            token_url,
            scope,
            method,
        } => EndpointAuthRecord::OAuth2 {
            client_id,
            sealed_client_secret: state.sealer.seal(owner.as_bytes(), &client_secret)?,
            token_url,
            scope,
            method,
        },
    })
}

/// The API view: the username, client id, token URL and scope, never a secret.
pub(super) fn view(auth: &EndpointAuthRecord) -> Value {
    match auth {
        EndpointAuthRecord::None => json!({"type": "NONE"}),
        EndpointAuthRecord::Basic { username, .. } => {
            json!({"type": "BASIC", "credentials": {"username": username}})
        }
        EndpointAuthRecord::OAuth2 {
            client_id,
            token_url,
            scope,
            method,
            ..
        } => json!({"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": {
            "clientId": client_id,
            "tokenUrl": token_url,
            "scope": scope,
            "tokenEndpointAuthMethod": method.as_str(),
        }}),
    }
}

//! An HTTPS client for a running hookd (in-process or a child process): the API calls
//! tests make, authenticated with the admin token.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use hookd::delivery::Client;

use super::WAIT;

pub struct Api {
    pub url: String,
    pub token: String,
    pub client: Client,
}

impl Api {
    /// A client for hookd on `https://localhost:port`, trusting the test CA.
    pub fn new(port: u16, ca: &super::TestCa) -> Self {
        Self {
            url: format!("https://localhost:{port}"),
            token: super::ADMIN_TOKEN.to_string(),
            client: super::test_client(ca),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        self.call_raw(
            method,
            path,
            body,
            &[("authorization", &format!("Bearer {}", self.token))],
        )
        .await
    }

    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = self
            .client
            .send(request, WAIT, 16 * 1024 * 1024)
            .await
            .expect("hookd answers");
        let value = if response.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&response.body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&response.body).into_owned())
            })
        };
        (response.status, value)
    }

    /// Creates an entity (`parent` None: a top-level organisation).
    pub async fn create_entity(&self, id: &str, parent: Option<&str>) {
        let body = serde_json::json!({"id": id, "name": id, "parentId": parent});
        let (status, body) = self.call("POST", "/v1/admin/entities", Some(body)).await;
        assert_eq!(status, 201, "{body}");
    }

    /// Creates an API key for `entity` and returns the key itself (`hk_...`).
    pub async fn create_key(&self, entity: &str, scopes: &[&str]) -> String {
        let body = serde_json::json!({"entityId": entity, "name": "k", "scopes": scopes});
        let (status, body) = self.call("POST", "/v1/admin/api-keys", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        body["data"]["key"].as_str().unwrap().to_string()
    }

    /// The same call made with another token.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        let auth = format!("Bearer {token}");
        self.call_raw(method, path, body, &[("authorization", &auth)])
            .await
    }

    /// Creates a subscription and returns (id, signing secret).
    pub async fn subscribe(&self, url: &str, types: &[&str]) -> (String, String) {
        let (status, body) = self
            .call(
                "POST",
                "/v1/subscriptions",
                Some(serde_json::json!({"eventTypes": types, "endpointUrl": url})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["data"]["id"].as_str().unwrap().to_string(),
            body["data"]["signingSecret"].as_str().unwrap().to_string(),
        )
    }

    pub async fn post_event(&self, event_type: &str, data: Value) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/v1/events",
                Some(serde_json::json!({"eventType": event_type, "data": data})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"].clone()
    }

    /// Polls a delivery until `state` (the API is the only place the state shows).
    pub async fn wait_for_delivery_state(&self, delivery: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self
                .call("GET", &format!("/v1/deliveries/{delivery}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["state"] == state {
                return body["data"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "delivery {delivery} never reached {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The id of the (only or first) delivery of an accepted event.
    pub async fn first_delivery(&self, accepted: &Value) -> String {
        let event_id = accepted["id"].as_str().unwrap();
        self.deliveries_of(event_id).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every delivery of an event (the first page of 500 is all a test makes).
    pub async fn deliveries_of(&self, event_id: &str) -> Vec<Value> {
        let path = format!("/v1/events/{event_id}/deliveries?limit=500");
        let (status, body) = self.call("GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["nextCursor"].is_null(), "{body}");
        body["data"].as_array().unwrap().clone()
    }
}

//! Records for the store's unit tests, whichever backend they exercise.

use super::ALL_SCOPES;
use super::records::{EndpointAuthRecord, SubscriptionRecord, SubscriptionStatus};

/// An ACTIVE subscription of `entity` to `event_types`, with nothing else set.
pub fn subscription_to(entity: &str, event_types: &[&str]) -> SubscriptionRecord {
    SubscriptionRecord {
        entity: entity.into(),
        status: SubscriptionStatus::Active,
        disabled_reason: None,
        event_types: event_types.iter().map(|t| t.to_string()).collect(),
        endpoint_url: "https://example.com/".into(),
        endpoint_auth: EndpointAuthRecord::None,
        custom_headers: vec![],
        rate_limit: None,
        description: None,
        signing_secrets: vec![],
        created_ms: 0,
        updated_ms: 0,
        active_since_ms: 0,
        scopes: vec![ALL_SCOPES.into()],
    }
}

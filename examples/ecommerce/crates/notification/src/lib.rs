//! Notification service: tells the customer about `OrderCreated` and `ShipmentCreated`
//! events (it runs in one pipeline per source topic), once per order and event type.

use weir_ecommerce_events::{Notification, event};
use weir_sdk::Idempotency;
use weir_sdk::json::Value;
use weir_sdk::prelude::*;

/// The notification handler.
pub struct Notify;

impl Handler for Notify {
    type In = Json<Value>;
    type Out = Output;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&[])?;
        Ok(Notify)
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency { by: Selector::Key, window_ms: 7 * 86_400_000 })
    }

    fn handle(&mut self, Json(e): Json<Value>, meta: &Meta) -> Result<Vec<Output>, Error> {
        let order = e["order_id"].as_str().unwrap_or_default().to_string();
        let text = match meta.header(headers::TYPE) {
            Some("OrderCreated") => format!("We received your order {order}."),
            Some("ShipmentCreated") => {
                format!(
                    "Order {order} is on its way with {} (tracking {}).",
                    e["carrier"].as_str().unwrap_or("?"),
                    e["tracking"].as_str().unwrap_or("?")
                )
            }
            _ => return Ok(Vec::new()),
        };
        let n =
            Notification { order_id: order, customer: e["customer"].as_str().unwrap_or_default().to_string(), text };
        Ok(vec![event("Notification", &n.order_id, &n)?])
    }
}

weir_sdk::export!(Notify as handler);

//! The events of the e-commerce order flow (background document, section 8), shared by its
//! services: each is a JSON payload keyed by the order id with a `weir-type` header.

use serde::{Deserialize, Serialize};
use weir_sdk::{Error, Output, headers};

/// A customer placed an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCreated {
    /// Order id, also the message key and idempotency key.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// What.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// Price in cents.
    pub amount_cents: u64,
    /// Card to charge.
    pub card: String,
}

/// The payment went through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentProcessed {
    /// Order id.
    pub order_id: String,
    /// Who paid.
    pub customer: String,
    /// What for.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// Charged, in cents.
    pub amount_cents: u64,
    /// Payment reference.
    pub payment_id: String,
}

/// Stock was reserved for the order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryUpdated {
    /// Order id.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// Item.
    pub sku: String,
    /// Units reserved.
    pub qty: u32,
    /// Units left after the reservation.
    pub remaining: i64,
}

/// The order is on its way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShipmentCreated {
    /// Order id.
    pub order_id: String,
    /// Who receives it.
    pub customer: String,
    /// Carrier.
    pub carrier: String,
    /// Tracking number.
    pub tracking: String,
}

/// A message to a customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    /// Order id.
    pub order_id: String,
    /// Recipient.
    pub customer: String,
    /// Text.
    pub text: String,
}

/// An event as an output: JSON payload, keyed by the order id, typed by the `weir-type` header.
pub fn event<T: Serialize>(kind: &str, order_id: &str, payload: &T) -> Result<Output, Error> {
    Ok(Output::json(payload)?.key(order_id.as_bytes().to_vec()).header(headers::TYPE, kind))
}

/// A stable short hash of text (FNV-1a), for deterministic references in the demo.
pub fn short_hash(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:08x}", h as u32)
}

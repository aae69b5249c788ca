//! Shipping service: creates a shipment for each `InventoryUpdated`, picking the carrier by
//! the configured rule, and emits `ShipmentCreated`.

use weir_ecommerce_events::{InventoryUpdated, ShipmentCreated, event, short_hash};
use weir_sdk::Idempotency;
use weir_sdk::prelude::*;

/// The shipping handler.
pub struct Shipping {
    carriers: Vec<String>,
}

impl Handler for Shipping {
    type In = Json<InventoryUpdated>;
    type Out = Output;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["carriers"])?;
        let carriers: Vec<String> =
            config.get("carriers").unwrap_or("parcelco").split(',').map(str::to_string).collect();
        Ok(Shipping { carriers })
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency { by: Selector::Key, window_ms: 7 * 86_400_000 })
    }

    fn handle(&mut self, Json(u): Json<InventoryUpdated>, _meta: &Meta) -> Result<Vec<Output>, Error> {
        let tracking = short_hash(&format!("ship:{}", u.order_id));
        let carrier =
            self.carriers[usize::from_str_radix(&tracking[..2], 16).unwrap_or(0) % self.carriers.len()].clone();
        let shipment = ShipmentCreated {
            order_id: u.order_id,
            customer: u.customer,
            carrier,
            tracking: format!("TRK-{tracking}"),
        };
        Ok(vec![event("ShipmentCreated", &shipment.order_id, &shipment)?])
    }
}

weir_sdk::export!(Shipping as handler);

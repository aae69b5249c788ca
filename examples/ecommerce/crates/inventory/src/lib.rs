//! Inventory service: keeps stock per SKU in state (seeded from `stock.<sku>=N`), reserves
//! stock for each `PaymentProcessed` once (idempotent by order id) and emits
//! `InventoryUpdated`. Stock may go negative: a backorder, still shipped later.

use weir_ecommerce_events::{InventoryUpdated, PaymentProcessed, event};
use weir_sdk::Idempotency;
use weir_sdk::prelude::*;

/// The inventory handler.
pub struct Inventory {
    seed: Vec<(String, i64)>,
}

fn stock_key(sku: &str) -> Vec<u8> {
    format!("stock:{sku}").into_bytes()
}

impl Handler for Inventory {
    type In = Json<PaymentProcessed>;
    type Out = Output;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["stock."])?;
        let seed = config
            .with_prefix("stock.")
            .map(|(sku, n)| {
                n.parse()
                    .map(|n| (sku.to_string(), n))
                    .map_err(|_| Error::fatal(format!("config key `stock.{sku}` must be a number")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Inventory { seed })
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency { by: Selector::Key, window_ms: 7 * 86_400_000 })
    }

    fn handle(&mut self, Json(p): Json<PaymentProcessed>, _meta: &Meta) -> Result<Vec<Output>, Error> {
        let key = stock_key(&p.sku);
        let stock = match state::get_json::<i64>(&key)? {
            Some(s) => s,
            None => self.seed.iter().find(|(s, _)| *s == p.sku).map_or(0, |(_, n)| *n),
        };
        let remaining = stock - i64::from(p.qty);
        state::set_json(&key, &remaining)?;
        let update = InventoryUpdated { order_id: p.order_id, customer: p.customer, sku: p.sku, qty: p.qty, remaining };
        Ok(vec![event("InventoryUpdated", &update.order_id, &update)?])
    }
}

weir_sdk::export!(Inventory as handler);

// The contract, carried in the component (`examples/ecommerce/schemas/`).
weir_sdk::schemas! {
    reads: avro(include_str!("../../../schemas/payment_processed.avsc")),
    writes: avro(include_str!("../../../schemas/inventory_updated.avsc")),
}

//! Payment service: charges each `OrderCreated` once (idempotent by order id) and emits
//! `PaymentProcessed`. Cards listed in `declined` fail with a retryable error, so the
//! pipeline retries them and then dead-letters them.

use weir_ecommerce_events::{OrderCreated, PaymentProcessed, event, short_hash};
use weir_sdk::Idempotency;
use weir_sdk::prelude::*;

/// The payment handler.
pub struct Payment {
    declined: Vec<String>,
}

impl Handler for Payment {
    type In = Json<OrderCreated>;
    type Out = Output;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["declined"])?;
        let declined =
            config.get("declined").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
        Ok(Payment { declined })
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency { by: Selector::Key, window_ms: 7 * 86_400_000 })
    }

    fn handle(&mut self, Json(o): Json<OrderCreated>, _meta: &Meta) -> Result<Vec<Output>, Error> {
        if self.declined.contains(&o.card) {
            return Err(Error::retryable(format!(
                "card ending {} declined for order {}",
                &o.card[o.card.len().saturating_sub(4)..],
                o.order_id
            )));
        }
        let paid = PaymentProcessed {
            payment_id: format!("pay-{}", short_hash(&o.order_id)),
            order_id: o.order_id,
            customer: o.customer,
            sku: o.sku,
            qty: o.qty,
            amount_cents: o.amount_cents,
        };
        info!("charged {} cents for {}", paid.amount_cents, paid.order_id);
        Ok(vec![event("PaymentProcessed", &paid.order_id, &paid)?])
    }
}

weir_sdk::export!(Payment as handler);

// The contract, carried in the component: weir refuses a pipeline (or a later version) whose
// neighbours' schemas this does not fit (`examples/ecommerce/schemas/`).
weir_sdk::schemas! {
    reads: avro(include_str!("../../../schemas/order_created.avsc")),
    writes: avro(include_str!("../../../schemas/payment_processed.avsc")),
}

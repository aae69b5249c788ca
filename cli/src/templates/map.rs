//! A weir map: turns each order into an invoice for the configured `account` (JSON in, JSON
//! out), adding `fee_cents`.

use serde::{Deserialize, Serialize};
use weir_sdk::prelude::*;

#[derive(Deserialize)]
pub struct Order {
    id: u64,
    total_cents: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Invoice {
    order: u64,
    account: String,
    amount_cents: u64,
}

#[derive(Deserialize)]
pub struct Billing {
    #[serde(default)]
    fee_cents: u64,
    #[serde(default)]
    account: String,
}

impl Map for Billing {
    type In = Json<Order>;
    type Out = Json<Invoice>;

    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn map(&mut self, Json(order): Json<Order>) -> Result<Json<Invoice>, Error> {
        let amount_cents = order.total_cents + self.fee_cents;
        Ok(Json(Invoice { order: order.id, account: self.account.clone(), amount_cents }))
    }
}

weir_sdk::export!(Billing as map);

// What this plugin writes, carried in the component: `weir pipeline create` (and every later
// deploy) is refused if it does not fit the sink topic's schema subject.
weir_sdk::schemas! {
    writes: json(include_str!("../invoice.schema.json")),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bills_an_order_to_an_account_of_digits() {
        let mut m = Billing::init(&Config::from_pairs([("fee_cents", "50"), ("account", "007")])).unwrap();
        let Json(invoice) = m.map(Json(Order { id: 7, total_cents: 1000 })).unwrap();
        assert_eq!(invoice, Invoice { order: 7, account: "007".into(), amount_cents: 1050 });
    }
}

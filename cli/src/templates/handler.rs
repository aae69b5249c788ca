//! A weir handler: keeps a running total per account in state and handles each payment once
//! (by its `weir-idempotency-key` header) within a day. Balances carry the configured
//! `currency` (an ISO 4217 code, letters or digits: `EUR` or `978`).

use serde::{Deserialize, Serialize};
use weir_sdk::prelude::*;
use weir_sdk::Idempotency;

#[derive(Deserialize)]
pub struct Payment {
    account: String,
    cents: i64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Balance {
    account: String,
    balance_cents: i64,
    currency: String,
}

#[derive(Deserialize)]
pub struct Accounts {
    #[serde(default = "eur")]
    currency: String,
}

fn eur() -> String {
    "EUR".into()
}

impl Handler for Accounts {
    type In = Json<Payment>;
    type Out = Json<Balance>;

    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency { by: Selector::Header(headers::IDEMPOTENCY_KEY.into()), window_ms: 86_400_000 })
    }

    fn handle(&mut self, Json(p): Json<Payment>, _meta: &Meta) -> Result<Vec<Json<Balance>>, Error> {
        let key = format!("balance:{}", p.account);
        let balance = state::get_json::<i64>(key.as_bytes())?.unwrap_or(0) + p.cents;
        state::set_json(key.as_bytes(), &balance)?;
        info!("{} now holds {balance}", p.account);
        Ok(vec![Json(Balance { account: p.account, balance_cents: balance, currency: self.currency.clone() })])
    }
}

weir_sdk::export!(Accounts as handler);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_idempotency() {
        assert!(Accounts::init(&Config::default()).unwrap().idempotency().is_some());
    }

    #[test]
    fn a_currency_of_digits_is_text() {
        let a = Accounts::init(&Config::from_pairs([("currency", "978")])).unwrap();
        assert_eq!(a.currency, "978");
    }
}

//! The shapes a plugin can take. [`Plugin`] is the general form; the others are shorter for
//! common cases, each adapted to a `Plugin` by the `export!(T as kind)` macro.
//!
//! | kind | one input becomes | export |
//! |---|---|---|
//! | [`Filter`] | itself, or nothing | `export!(T as filter)` |
//! | [`Map`] | exactly one output | `export!(T as map)` |
//! | [`FilterMap`] | one output or nothing | `export!(T as filter_map)` |
//! | [`FlatMap`] | zero or more outputs | `export!(T as flat_map)` |
//! | [`Route`] | itself, sent to a named topic or passed on | `export!(T as route)` |
//! | [`Handler`] | zero or more outputs, each idempotency key handled once | `export!(T as handler)` |
//! | [`Aggregate`] | a result per key when its tumbling window closes | `export!(T as aggregate)` |
//!
//! Typed kinds name their input (`Message`, `Json<T>`, `MsgPack<T>`, `String`, `Vec<u8>`) and
//! output (`Output`, `Json<T>`, `MsgPack<T>`, `String`, `Vec<u8>`); outputs inherit the input's
//! key and headers.

use serde::{Serialize, de::DeserializeOwned};

use crate::codec::{FromMessage, IntoOutput, Meta};
use crate::{Config, Error, Message, Outcome, Output, Selector, state};

/// The general plugin: configured once, then called for every input message.
///
/// ```
/// use weir_sdk::prelude::*;
///
/// /// Splits a comma-separated line into one message per item, routing empty items away.
/// struct Split;
///
/// impl Plugin for Split {
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(Split)
///     }
///     fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
///         let items = msg.text()?.split(',').map(|s| match s.trim() {
///             "" => Output::new("empty").to("rejects"),
///             item => Output::new(item),
///         });
///         Ok(Outcome::Emit(items.collect()))
///     }
/// }
///
/// weir_sdk::export!(Split);
/// # fn main() {}
/// ```
pub trait Plugin: Sized + 'static {
    /// Build the plugin from its step's configuration; an error names the bad key.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Decide what becomes of `msg`.
    fn process(&mut self, msg: Message) -> Result<Outcome, Error>;
}

/// Keep (`true`) or drop (`false`) each message, unchanged.
///
/// ```
/// use weir_sdk::prelude::*;
///
/// struct NotEmpty;
///
/// impl Filter for NotEmpty {
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(NotEmpty)
///     }
///     fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
///         Ok(!msg.value().is_empty())
///     }
/// }
///
/// weir_sdk::export!(NotEmpty as filter);
/// # fn main() {}
/// ```
pub trait Filter: Sized + 'static {
    /// Build the filter from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Whether `msg` passes.
    fn filter(&mut self, msg: &Message) -> Result<bool, Error>;
}

/// Turn every input into exactly one output — typed through serde, e.g. orders to invoices.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_sdk::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Order { id: u64, total_cents: u64 }
/// #[derive(Serialize)]
/// struct Invoice { order: u64, amount_cents: u64, tax_cents: u64 }
///
/// #[derive(Deserialize)]
/// struct Settings { tax_percent: u64 }
///
/// struct Billing { tax_percent: u64 }
///
/// impl Map for Billing {
///     type In = Json<Order>;
///     type Out = Json<Invoice>;
///
///     fn init(config: &Config) -> Result<Self, Error> {
///         let s: Settings = config.deserialize()?; // an error names the bad key
///         Ok(Billing { tax_percent: s.tax_percent })
///     }
///
///     fn map(&mut self, Json(order): Json<Order>) -> Result<Json<Invoice>, Error> {
///         let tax = order.total_cents * self.tax_percent / 100;
///         Ok(Json(Invoice { order: order.id, amount_cents: order.total_cents + tax, tax_cents: tax }))
///     }
/// }
///
/// weir_sdk::export!(Billing as map);
/// # fn main() {}
/// ```
pub trait Map: Sized + 'static {
    /// What it takes.
    type In: FromMessage;
    /// What it returns.
    type Out: IntoOutput;

    /// Build the map from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// The output for `input`.
    fn map(&mut self, input: Self::In) -> Result<Self::Out, Error>;
}

/// Turn each input into one output, or none.
///
/// ```
/// use weir_sdk::prelude::*;
///
/// /// Parses numbers, dropping what is not one.
/// struct Numbers;
///
/// impl FilterMap for Numbers {
///     type In = String;
///     type Out = Json<f64>;
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(Numbers)
///     }
///     fn filter_map(&mut self, text: String) -> Result<Option<Json<f64>>, Error> {
///         Ok(text.trim().parse().ok().map(Json))
///     }
/// }
///
/// weir_sdk::export!(Numbers as filter_map);
/// # fn main() {}
/// ```
pub trait FilterMap: Sized + 'static {
    /// What it takes.
    type In: FromMessage;
    /// What it returns.
    type Out: IntoOutput;

    /// Build it from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// The output for `input`, if any.
    fn filter_map(&mut self, input: Self::In) -> Result<Option<Self::Out>, Error>;
}

/// Turn each input into zero or more outputs.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_sdk::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Cart { items: Vec<String> }
/// #[derive(Serialize)]
/// struct Line { item: String }
///
/// struct Lines;
///
/// impl FlatMap for Lines {
///     type In = Json<Cart>;
///     type Out = Json<Line>;
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(Lines)
///     }
///     fn flat_map(&mut self, Json(cart): Json<Cart>) -> Result<Vec<Json<Line>>, Error> {
///         Ok(cart.items.into_iter().map(|item| Json(Line { item })).collect())
///     }
/// }
///
/// weir_sdk::export!(Lines as flat_map);
/// # fn main() {}
/// ```
pub trait FlatMap: Sized + 'static {
    /// What it takes.
    type In: FromMessage;
    /// What it returns.
    type Out: IntoOutput;

    /// Build it from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// The outputs for `input`.
    fn flat_map(&mut self, input: Self::In) -> Result<Vec<Self::Out>, Error>;
}

/// Send each message, unchanged, to a named topic — or pass it on (`None`).
///
/// ```
/// use weir_sdk::prelude::*;
///
/// /// `weir-type: Error` events to `errors`, the rest on.
/// struct ByType;
///
/// impl Route for ByType {
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(ByType)
///     }
///     fn route(&mut self, msg: &Message) -> Result<Option<String>, Error> {
///         Ok((msg.message_type() == Some("Error")).then(|| "errors".to_string()))
///     }
/// }
///
/// weir_sdk::export!(ByType as route);
/// # fn main() {}
/// ```
pub trait Route: Sized + 'static {
    /// Build it from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// The topic for `msg`, or `None` to pass it on.
    fn route(&mut self, msg: &Message) -> Result<Option<String>, Error>;
}

/// Which messages count as the same operation, and for how long.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// Where the idempotency key is: e.g. `Selector::Header("weir-idempotency-key")`.
    pub by: Selector,
    /// How long a handled key is remembered.
    pub window_ms: u64,
}

/// An event handler: zero or more outputs per input, with step state at hand (the [`state`]
/// module) and, if [`Handler::idempotency`] says so, each idempotency key handled once within a
/// window — repeats are dropped before `handle` sees them, across batches and restarts.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_sdk::prelude::*;
/// use weir_sdk::Idempotency;
///
/// #[derive(Deserialize)]
/// struct Payment { order: u64, cents: u64 }
/// #[derive(Serialize)]
/// struct Receipt { order: u64, total_paid_cents: u64 }
///
/// struct Ledger;
///
/// impl Handler for Ledger {
///     type In = Json<Payment>;
///     type Out = Json<Receipt>;
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(Ledger)
///     }
///     fn idempotency(&self) -> Option<Idempotency> {
///         Some(Idempotency { by: Selector::Header(headers::IDEMPOTENCY_KEY.into()), window_ms: 86_400_000 })
///     }
///     fn handle(&mut self, Json(p): Json<Payment>, _meta: &Meta) -> Result<Vec<Json<Receipt>>, Error> {
///         let key = format!("paid:{}", p.order);
///         let total = state::get_json::<u64>(key.as_bytes())?.unwrap_or(0) + p.cents;
///         state::set_json(key.as_bytes(), &total)?;
///         Ok(vec![Json(Receipt { order: p.order, total_paid_cents: total })])
///     }
/// }
///
/// weir_sdk::export!(Ledger as handler);
/// # fn main() {}
/// ```
pub trait Handler: Sized + 'static {
    /// What it takes.
    type In: FromMessage;
    /// What it returns.
    type Out: IntoOutput;

    /// Build it from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// How to recognise repeats; `None` (the default) handles every message.
    fn idempotency(&self) -> Option<Idempotency> {
        None
    }

    /// Handle one input.
    fn handle(&mut self, input: Self::In, meta: &Meta) -> Result<Vec<Self::Out>, Error>;
}

/// A closed tumbling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, ms since the epoch (inclusive).
    pub start_ms: u64,
    /// End, ms since the epoch (exclusive).
    pub end_ms: u64,
}

/// Fold inputs into an accumulator per key, per tumbling window; when a later window's first
/// input arrives, every key of the closed window is emitted. Accumulators live in step state,
/// so they survive restarts; an input older than the open window is late and dropped
/// (counted under the state key `agg.late`).
///
/// ```
/// use weir_sdk::prelude::*;
/// use weir_sdk::Window;
///
/// /// Sum of `amount` per customer per minute.
/// struct Spend;
///
/// impl Aggregate for Spend {
///     type In = Json<weir_sdk::json::Value>;
///     type Acc = f64;
///     type Out = String;
///     fn init(_config: &Config) -> Result<Self, Error> {
///         Ok(Spend)
///     }
///     fn window_ms(&self) -> u64 {
///         60_000
///     }
///     fn key(&self, Json(v): &Json<weir_sdk::json::Value>, _meta: &Meta) -> Result<String, Error> {
///         v["customer"].as_str().map(str::to_string).ok_or_else(|| Error::fatal("no customer"))
///     }
///     fn add(&mut self, acc: &mut f64, Json(v): Json<weir_sdk::json::Value>) -> Result<(), Error> {
///         *acc += v["amount"].as_f64().unwrap_or(0.0);
///         Ok(())
///     }
///     fn emit(&mut self, key: String, w: Window, acc: f64) -> Result<String, Error> {
///         Ok(format!("{key} spent {acc} in [{}, {})", w.start_ms, w.end_ms))
///     }
/// }
///
/// weir_sdk::export!(Spend as aggregate);
/// # fn main() {}
/// ```
pub trait Aggregate: Sized + 'static {
    /// What it takes.
    type In: FromMessage;
    /// The per-key accumulator, kept in state as JSON.
    type Acc: Serialize + DeserializeOwned + Default;
    /// What a closed window emits per key (keyed by the key).
    type Out: IntoOutput;

    /// Build it from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Window length.
    fn window_ms(&self) -> u64;

    /// The key an input counts under.
    fn key(&self, input: &Self::In, meta: &Meta) -> Result<String, Error>;

    /// The input's time (default: its append time).
    fn time(&self, _input: &Self::In, meta: &Meta) -> Result<u64, Error> {
        Ok(meta.timestamp_ms)
    }

    /// Fold an input into its key's accumulator.
    fn add(&mut self, acc: &mut Self::Acc, input: Self::In) -> Result<(), Error>;

    /// The result for one key of a closed window.
    fn emit(&mut self, key: String, window: Window, acc: Self::Acc) -> Result<Self::Out, Error>;
}

/// Adapts a [`Filter`] to a [`Plugin`].
pub struct FilterPlugin<F>(F);

impl<F: Filter> Plugin for FilterPlugin<F> {
    fn init(config: &Config) -> Result<Self, Error> {
        F::init(config).map(FilterPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        Ok(if self.0.filter(&msg)? { Outcome::forward(msg) } else { Outcome::Drop })
    }
}

/// Adapts a [`Map`] to a [`Plugin`].
pub struct MapPlugin<M>(M);

impl<M: Map> Plugin for MapPlugin<M> {
    fn init(config: &Config) -> Result<Self, Error> {
        M::init(config).map(MapPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let meta = msg.meta();
        let out = self.0.map(M::In::from_message(msg)?)?;
        Ok(Outcome::one(out.into_output(&meta)?))
    }
}

/// Adapts a [`FilterMap`] to a [`Plugin`].
pub struct FilterMapPlugin<M>(M);

impl<M: FilterMap> Plugin for FilterMapPlugin<M> {
    fn init(config: &Config) -> Result<Self, Error> {
        M::init(config).map(FilterMapPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let meta = msg.meta();
        Ok(match self.0.filter_map(M::In::from_message(msg)?)? {
            Some(out) => Outcome::one(out.into_output(&meta)?),
            None => Outcome::Drop,
        })
    }
}

/// Adapts a [`FlatMap`] to a [`Plugin`].
pub struct FlatMapPlugin<M>(M);

impl<M: FlatMap> Plugin for FlatMapPlugin<M> {
    fn init(config: &Config) -> Result<Self, Error> {
        M::init(config).map(FlatMapPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let meta = msg.meta();
        let outs = self.0.flat_map(M::In::from_message(msg)?)?;
        Ok(Outcome::Emit(outs.into_iter().map(|o| o.into_output(&meta)).collect::<Result<_, _>>()?))
    }
}

/// Adapts a [`Route`] to a [`Plugin`].
pub struct RoutePlugin<R>(R);

impl<R: Route> Plugin for RoutePlugin<R> {
    fn init(config: &Config) -> Result<Self, Error> {
        R::init(config).map(RoutePlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        Ok(match self.0.route(&msg)? {
            Some(topic) => Outcome::Forward(topic),
            None => Outcome::forward(msg),
        })
    }
}

/// Adapts a [`Handler`] to a [`Plugin`], applying its idempotency.
pub struct HandlerPlugin<H>(H);

/// State key prefix of handled idempotency keys.
const IDEMPOTENCY_PREFIX: &str = "idem:";

impl<H: Handler> Plugin for HandlerPlugin<H> {
    fn init(config: &Config) -> Result<Self, Error> {
        H::init(config).map(HandlerPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let once = match self.0.idempotency() {
            Some(idem) => idem.by.select(&msg)?.map(|id| (format!("{IDEMPOTENCY_PREFIX}{id}"), idem.window_ms)),
            None => None,
        };
        if let Some((key, _)) = &once
            && state::get(key.as_bytes()).is_some()
        {
            return Ok(Outcome::Drop);
        }
        let meta = msg.meta();
        let outs = self.0.handle(H::In::from_message(msg)?, &meta)?;
        // Remembered only on success: a failed attempt may be retried.
        if let Some((key, window_ms)) = once {
            state::set_with_ttl(key.as_bytes(), b"1", window_ms)?;
        }
        Ok(Outcome::Emit(outs.into_iter().map(|o| o.into_output(&meta)).collect::<Result<_, _>>()?))
    }
}

/// Adapts an [`Aggregate`] to a [`Plugin`].
pub struct AggregatePlugin<A>(A);

const AGG_WINDOW: &[u8] = b"agg.window";
const AGG_KEYS: &[u8] = b"agg.keys";
const AGG_LATE: &[u8] = b"agg.late";

fn acc_key(key: &str) -> Vec<u8> {
    format!("agg.acc:{key}").into_bytes()
}

impl<A: Aggregate> Plugin for AggregatePlugin<A> {
    fn init(config: &Config) -> Result<Self, Error> {
        let a = A::init(config)?;
        if a.window_ms() == 0 {
            return Err(Error::fatal("the aggregate's window must be longer than 0"));
        }
        Ok(AggregatePlugin(a))
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let meta = msg.meta();
        let input = A::In::from_message(msg)?;
        let len = self.0.window_ms();
        let time = self.0.time(&input, &meta)?;
        let window = time - time % len;
        let key = self.0.key(&input, &meta)?;
        let mut outputs = Vec::new();
        match state::get_json::<u64>(AGG_WINDOW)? {
            Some(open) if window < open => {
                let late: u64 = state::get_json(AGG_LATE)?.unwrap_or(0);
                state::set_json(AGG_LATE, &(late + 1))?;
                return Ok(Outcome::Drop);
            }
            Some(open) if window > open => outputs = self.close(Window { start_ms: open, end_ms: open + len })?,
            _ => {}
        }
        state::set_json(AGG_WINDOW, &window)?;
        let slot = acc_key(&key);
        let mut acc: A::Acc = match state::get_json(&slot)? {
            Some(acc) => acc,
            None => {
                let mut keys: Vec<String> = state::get_json(AGG_KEYS)?.unwrap_or_default();
                keys.push(key.clone());
                state::set_json(AGG_KEYS, &keys)?;
                A::Acc::default()
            }
        };
        self.0.add(&mut acc, input)?;
        state::set_json(&slot, &acc)?;
        Ok(if outputs.is_empty() { Outcome::Drop } else { Outcome::Emit(outputs) })
    }
}

impl<A: Aggregate> AggregatePlugin<A> {
    /// Emit and forget every key of the closed window.
    fn close(&mut self, window: Window) -> Result<Vec<Output>, Error> {
        let keys: Vec<String> = state::get_json(AGG_KEYS)?.unwrap_or_default();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let slot = acc_key(&key);
            let acc: A::Acc = state::get_json(&slot)?.unwrap_or_default();
            state::delete(&slot);
            let meta = Meta { key: Some(key.clone().into_bytes()), ..Meta::default() };
            out.push(self.0.emit(key, window, acc)?.into_output(&meta)?);
        }
        state::delete(AGG_KEYS);
        Ok(out)
    }
}

//! The shapes a plugin can take: the general [`Plugin`] and the short forms built on it.

use crate::{Config, Error, Message, Outcome, Output};

/// The general plugin: configured once, then called for every input message.
///
/// Prefer [`Filter`] or [`Map`] when they fit; implement this when one input can become
/// several outputs, be routed, or be dropped for reasons a filter cannot express.
pub trait Plugin: Sized + 'static {
    /// Build the plugin from its step's configuration; an error names the bad key.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Decide what becomes of `msg`.
    fn process(&mut self, msg: Message) -> Result<Outcome, Error>;
}

/// Keep (`true`) or drop (`false`) each message, unchanged.
pub trait Filter: Sized + 'static {
    /// Build the filter from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Whether `msg` passes.
    fn filter(&mut self, msg: &Message) -> Result<bool, Error>;
}

/// Turn every message into exactly one output.
pub trait Map: Sized + 'static {
    /// Build the map from its step's configuration.
    fn init(config: &Config) -> Result<Self, Error>;

    /// The output for `msg`.
    fn map(&mut self, msg: Message) -> Result<Output, Error>;
}

/// Adapts a [`Filter`] to a [`Plugin`]; used by [`export_filter!`](crate::export_filter).
pub struct FilterPlugin<F>(F);

impl<F: Filter> Plugin for FilterPlugin<F> {
    fn init(config: &Config) -> Result<Self, Error> {
        F::init(config).map(FilterPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        Ok(if self.0.filter(&msg)? { Outcome::forward(msg) } else { Outcome::Drop })
    }
}

/// Adapts a [`Map`] to a [`Plugin`]; used by [`export_map!`](crate::export_map).
pub struct MapPlugin<M>(M);

impl<M: Map> Plugin for MapPlugin<M> {
    fn init(config: &Config) -> Result<Self, Error> {
        M::init(config).map(MapPlugin)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        self.0.map(msg).map(Outcome::one)
    }
}

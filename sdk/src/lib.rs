//! The weir guest SDK: write stream-processing plugins in a few lines and compile them to
//! `wasm32-wasip2` components that `weir serve` runs.
//!
//! The SDK owns the bindings to the `weir:plugin` WIT package; plugin crates depend on
//! `weir-sdk` alone and end with one export line.
//!
//! # A complete plugin
//!
//! A filter keeping orders above a threshold configured per pipeline step
//! (`weir pipeline create … --config min=100`):
//!
//! ```
//! use weir_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Order { total: u64 }
//!
//! struct BigOrders { min: u64 }
//!
//! impl Filter for BigOrders {
//!     fn init(config: &Config) -> Result<Self, Error> {
//!         Ok(BigOrders { min: config.parse_or("min", 100)? })
//!     }
//!
//!     fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
//!         let order: Order = msg.json()?;
//!         Ok(order.total >= self.min)
//!     }
//! }
//!
//! weir_sdk::export_filter!(BigOrders);
//! # fn main() {}
//! ```
//!
//! Build it with `weir plugin build` (cargo for `wasm32-wasip2`, crate type `cdylib`) and
//! deploy the `.wasm` with `weir plugin deploy big-orders <that .wasm>`.
//!
//! This crate is not on crates.io. A plugin crate depends on `weir-sdk = "0.1"`, and
//! `weir plugin build` and `weir plugin unit` patch in the SDK of the weir that runs them
//! (`--config patch.crates-io.weir-sdk.path=…`), writing the same patch into the crate's
//! `.cargo/config.toml` (not committed) for plain cargo and editors. So the crate names no
//! path of the machine it was made on.
//!
//! # Kinds
//!
//! * [`Plugin`]: the general form — each input becomes an [`Outcome`]: zero or more
//!   [`Output`]s, a drop, or an [`Error`]. Export with `export!(T)`.
//! * [`Filter`], [`Map`], [`FilterMap`], [`FlatMap`], [`Route`], [`Handler`] (state and
//!   idempotency) and [`Aggregate`] (per-key tumbling windows): shorter forms, exported with
//!   `export!(T as filter)`, `export!(T as map)`, … Typed kinds take and return [`Json`],
//!   [`MsgPack`], `String`, `Vec<u8>`, or the raw [`Message`]/[`Output`].
//!
//! Configuration comes as `key=value` pairs ([`Config`]); [`Config::deserialize`] turns them
//! into a typed struct whose errors name the bad key.
//!
//! Failures carry a retryable flag ([`Error::retryable`] vs [`Error::fatal`]); the pipeline's
//! failure policy decides what happens next. State that must survive restarts lives in
//! [`state`], committed atomically with the batch's outputs.

extern crate self as weir_sdk;

/// Plugins allocate per message (decoded documents, outputs); talc serves wasm's one-threaded
/// heap faster than the default dlmalloc (BENCHMARKS.md, "the allocator").
#[cfg(all(feature = "talc", target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod codec;
mod config;
mod config_de;
mod error;
pub mod json;
mod kinds;
mod message;
pub mod packed;
#[doc(hidden)]
pub mod rt;
pub mod schemas;
mod select;
pub mod state;

pub use codec::{FromMessage, IntoOutput, Json, Meta, MsgPack};
pub use config::Config;
pub use error::Error;
pub use kinds::{
    Aggregate, AggregatePlugin, Filter, FilterMap, FilterMapPlugin, FilterPlugin, FlatMap, FlatMapPlugin, Handler,
    HandlerPlugin, Idempotency, Map, MapPlugin, Plugin, Route, RoutePlugin, Window,
};
pub use message::{Message, Outcome, Output, headers};
pub use select::Selector;

// Re-exported so plugins need no serde dependencies of their own to encode payloads.
pub use rmp_serde;
pub use serde;
pub use serde_json;

/// Generated bindings to the `weir:plugin` world. Plugins need not touch these directly.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "weir_sdk::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// What a plugin usually needs: `use weir_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Config, Error, Filter, FilterMap, FlatMap, Handler, Json, Map, Message, Meta, MsgPack, Outcome,
        Output, Plugin, Route, Selector, headers, json, state,
    };
    pub use crate::{debug, error, info, warn};
}

/// Export a plugin as this component's `weir:plugin` world: `export!(T)` for a [`Plugin`],
/// `export!(T as filter)` (or `map`, `filter_map`, `flat_map`, `route`, `handler`,
/// `aggregate`) for the other kinds.
///
/// Use once per crate, at the end of `lib.rs`.
#[macro_export]
macro_rules! export {
    ($plugin:ty as filter) => {
        $crate::export!($crate::FilterPlugin<$plugin>);
    };
    ($plugin:ty as map) => {
        $crate::export!($crate::MapPlugin<$plugin>);
    };
    ($plugin:ty as filter_map) => {
        $crate::export!($crate::FilterMapPlugin<$plugin>);
    };
    ($plugin:ty as flat_map) => {
        $crate::export!($crate::FlatMapPlugin<$plugin>);
    };
    ($plugin:ty as route) => {
        $crate::export!($crate::RoutePlugin<$plugin>);
    };
    ($plugin:ty as handler) => {
        $crate::export!($crate::HandlerPlugin<$plugin>);
    };
    ($plugin:ty as aggregate) => {
        $crate::export!($crate::AggregatePlugin<$plugin>);
    };
    ($plugin:ty) => {
        // Only a wasm build exports the world; natively the crate is an ordinary library
        // (unit tests, benchmarks) and defines no `init`/`process` symbols.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirExport;

            ::std::thread_local! {
                static __WEIR_PLUGIN: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            impl $crate::bindings::Guest for __WeirExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    __WEIR_PLUGIN.with(|slot| $crate::rt::init::<$plugin>(slot, config))
                }

                fn process(batch: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    __WEIR_PLUGIN.with(|slot| $crate::rt::process::<$plugin>(slot, batch))
                }
            }

    $crate::bindings::export_bindings!(__WeirExport with_types_in $crate::bindings);
        };
    };
}

/// Export a type implementing [`Filter`] as this component's plugin.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        $crate::export!($filter as filter);
    };
}

/// Export a type implementing [`Map`] as this component's plugin.
#[macro_export]
macro_rules! export_map {
    ($map:ty) => {
        $crate::export!($map as map);
    };
}

/// Log at `debug` level through the host's tracing output: `debug!("seen {}", n)`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::rt::log($crate::rt::Level::Debug, &::std::format!($($arg)*)) };
}

/// Log at `info` level through the host's tracing output.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::rt::log($crate::rt::Level::Info, &::std::format!($($arg)*)) };
}

/// Log at `warn` level through the host's tracing output.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::rt::log($crate::rt::Level::Warn, &::std::format!($($arg)*)) };
}

/// Log at `error` level through the host's tracing output.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::rt::log($crate::rt::Level::Error, &::std::format!($($arg)*)) };
}

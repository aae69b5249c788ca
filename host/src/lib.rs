//! weir: a stream-processing broker whose consumer logic runs as sandboxed WebAssembly
//! components.
//!
//! Data flows one way: client (`weir-client`) → [`server`] → [`broker`] → [`storage`] →
//! [`pipeline`] → [`runtime`] (plugins) → [`storage`]. Lower layers never reach up:
//! storage knows nothing of wasmtime or the wire; the runtime knows nothing of sockets; only
//! the server's native door knows the wire protocol's types.
//!
//! The three API boundaries are the WIT package (`wit/`), the wire protocol (the
//! `weir-client` crate's `wire`) and the on-disk format ([`storage::keys`],
//! [`storage::record`]).

pub mod auth;
pub mod broker;
pub mod build;
pub mod classic_groups;
pub mod cluster;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
pub mod limits;
pub mod metrics;
mod mirror;
pub mod pipeline;
pub mod queue;
pub mod registry;
pub mod runtime;
pub mod schemas;
pub mod server;
pub mod storage;
pub mod store;
pub mod types;

//! weir's client side: the wire protocol ([`wire`]: frames, requests, responses, error codes
//! and the data inside them), the Rust [`client`] with pipelined requests, a consumer-group
//! member on top of it ([`consumer`]), and the TLS setup both ends use ([`tls`]).
//!
//! This crate is a leaf: it knows nothing of the broker's storage or plugin runtime, so a
//! program that only talks to weir compiles neither RocksDB nor wasmtime. The server
//! converts these types to and from the broker's at its edge.

pub mod client;
pub mod consumer;
pub mod tls;
pub mod wire;

pub use client::{Client, ClientError, ConnectOptions};

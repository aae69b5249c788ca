//! The host's one binding of the `weir:plugin` WIT package (`wit/`).

// Generated code: its docs are the WIT comments.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use weir::plugin::{log, state, types};

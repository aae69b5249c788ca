//! The host's one binding of each `weir:plugin` version (`wit/`): 0.2.0 (the packed batch)
//! and the frozen 0.1.0 (WIT records), which components built before 0.2.0 implement.

// Generated code: its docs are the WIT comments.
#![allow(missing_docs)]

/// `weir:plugin@0.2.0`.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
    });

    pub use weir::plugin::{log, state, types};
}

/// `weir:plugin@0.1.0`, frozen.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
    });

    pub use weir::plugin::{log, state, types};
}

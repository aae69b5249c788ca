//! The host's one binding of the `weir:plugin` WIT package (`wit/`).

// Generated code: its docs are the WIT comments.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Shadow deploys compare live and candidate outcomes.
    additional_derives: [PartialEq],
});

pub use weir::plugin::{log, state, types};

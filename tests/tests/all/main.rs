//! Every weir integration test, in one binary (one link, one plugin build), one module per
//! area. Each test starts its own `weir serve` process through the shared harness.

mod amqp;
mod cli;
mod cluster;
mod e2e;
mod kafka;
mod lifecycle;
mod observability;
mod openapi;
mod patterns;
mod pipelines;
mod polyglot;
mod reliability;
mod schemas;
mod sdk;

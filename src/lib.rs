//! LCP node suite: a modular Lightning node for the Lightning Compute Protocol (LCP v0.2).
//!
//! Services (`peerd`, `lcpd`, `jobd`, `payd`, and the requesters' HTTP `gateway`) are libraries with one entry point each,
//! `run(config, bus, shutdown)`, talking over the ZeroMQ bus in [`bus`].

pub mod bus;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod demo;
pub mod gateway;
pub mod jobd;
pub mod lcpd;
pub mod lnd;
pub mod logging;
pub mod node;
pub mod payd;
pub mod peerd;
pub mod store;
pub mod testkit;
pub mod wire;

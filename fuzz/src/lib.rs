//! The wire module of the node, compiled on its own for fuzzing.

#[path = "../../src/wire/mod.rs"]
pub mod wire;

//! Shared helpers of the HTTP integration tests.

pub mod memory_store;

//! Shared helpers of the integration tests.

#![allow(dead_code)]

pub mod app;
pub mod faulty_store;
pub mod sio;

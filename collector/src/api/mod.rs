//! The operators' read side over HTTP.

pub mod views;

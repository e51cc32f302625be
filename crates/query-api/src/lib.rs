//! Scribble's query API: axum routes that answer analysts and dashboards from the store. Report
//! parameters are decoded and checked in [`params`], reports are computed by the domain crate on a
//! blocking thread, and [`error::ApiError`] is the one place errors become HTTP replies.

pub mod error;
mod metrics;
pub mod params;
mod routes;

pub use routes::{route_paths, router, serve, ApiConfig};

//! Scribble's domain: touchpoint events and their validation, identity stitching, journeys,
//! sessions and stages, path graphs, scribble metrics, and the demo data generator. No IO: callers
//! pass in clocks, ids and randomness, and get plain values back.

pub mod event;
pub mod journey;
pub mod stitch;
pub mod symbols;

//! Scribble's domain: touchpoint events and their validation, identity stitching, journeys,
//! sessions and stages, and the reports over them (path graphs, top paths, funnels, attribution,
//! touchpoint influence, lead follow-up, sales cycle, scribble metrics, the overview time
//! series), the privacy rules (IP truncation, tombstones, retention), with renderers and the
//! demo data generator. No IO: callers pass in clocks, ids and seeds, and get plain values back.

pub mod attribution;
pub mod compare;
pub mod demo;
pub mod event;
pub mod funnel;
pub mod influence;
pub mod journey;
pub mod leads;
pub mod metrics;
pub mod overview;
pub mod paths;
pub mod privacy;
pub mod project;
pub mod render;
pub mod sales_cycle;
pub mod stages;
pub mod stitch;
pub mod symbols;
pub mod top_paths;

//! The analyst reports: funnel, drop-off, top paths, touchpoint influence, attribution, sales
//! cycle and lead follow-up. Each handler decodes its parameters and hands the domain's report
//! function to [`answer`], which takes care of breakdowns, comparisons and CSV.

use axum::extract::State;
use axum::response::Response;
use scribble_domain::attribution::{attribution, AttributionReport};
use scribble_domain::funnel::{drop_off, funnel, DropOffReport, FunnelReport};
use scribble_domain::influence::{influence, InfluenceReport};
use scribble_domain::leads::{lead_follow_up, LeadReport};
use scribble_domain::sales_cycle::{sales_cycle, SalesCycle};
use scribble_domain::top_paths::{top_paths, TopPathsReport};
use serde_json::Value;
use tracing::instrument;

use super::answer::{answer, Table};
use super::{AppState, Reader};
use crate::error::ApiError;
use crate::params::{
    attribution_query, drop_off_query, funnel_query, influence_query, leads_query,
    sales_cycle_query, top_paths_query,
};

/// How many customers get through each funnel step, how long each step takes.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn funnel_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let query = funnel_query(reader.params)?;
    answer(&state, &reader.project, query, |set, options| {
        Ok(funnel(set, options)?)
    })
    .await
}

/// What the customers who stopped at each funnel step did before and next.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn drop_off_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let query = drop_off_query(reader.params)?;
    answer(&state, &reader.project, query, |set, options| {
        Ok(drop_off(set, &options.funnel, options.next_steps)?)
    })
    .await
}

/// The most common whole journeys, with the conversion rate of each.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn top_paths_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let query = top_paths_query(reader.params)?;
    answer(&state, &reader.project, query, |set, options| {
        Ok(top_paths(set, options))
    })
    .await
}

/// Per touchpoint: reach, lift, and whether it is a moment of impact or of influence.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn influence_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let query = influence_query(reader.params)?;
    answer(&state, &reader.project, query, |set, options| {
        Ok(influence(set, options))
    })
    .await
}

/// Conversions credited to touchpoints or channels under six attribution models.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn attribution_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let query = attribution_query(reader.params)?;
    answer(&state, &reader.project, query, |set, options| {
        Ok(attribution(set, options)?)
    })
    .await
}

/// Days and touchpoints from first touch to conversion.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn sales_cycle_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let query = sales_cycle_query(reader.params)?;
    answer(&state, &reader.project, query, |set, goal| {
        Ok(sales_cycle(set, goal))
    })
    .await
}

/// Which leads converted in time, late, or not at all (zombies).
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn leads_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let query = leads_query(reader.params, now_ms)?;
    answer(&state, &reader.project, query, |set, options| {
        Ok(lead_follow_up(set, options)?)
    })
    .await
}

impl Table for FunnelReport {
    fn csv(&self) -> String {
        self.to_csv()
    }
}

impl Table for DropOffReport {
    fn csv(&self) -> String {
        self.to_csv()
    }
}

impl Table for TopPathsReport {
    fn csv(&self) -> String {
        self.to_csv()
    }
}

impl Table for InfluenceReport {
    fn csv(&self) -> String {
        self.to_csv()
    }
}

impl Table for AttributionReport {
    fn csv(&self) -> String {
        self.to_csv()
    }
}

impl Table for SalesCycle {
    fn csv(&self) -> String {
        self.to_csv()
    }
}

impl Table for LeadReport {
    fn csv(&self) -> String {
        self.to_csv()
    }

    /// Without `zombie_customers`: customer numbers are positions in one journey set, which mean
    /// nothing to a reader (the CSV leaves them out for the same reason). `zombies` counts them.
    fn json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("reports serialize to JSON");
        if let Some(fields) = value.as_object_mut() {
            fields.remove("zombie_customers");
        }
        value
    }
}

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
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
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
        Ok(Leads(lead_follow_up(set, options)?))
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

/// A lead report as the API shows it: without `zombie_customers`, whose customer numbers are
/// positions in one journey set and mean nothing to a reader (the CSV leaves them out for the
/// same reason); `zombies` counts them.
pub(super) struct Leads(LeadReport);

impl Serialize for Leads {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let report = &self.0;
        let mut fields = serializer.serialize_struct("LeadReport", 12)?;
        fields.serialize_field("goal", &report.goal)?;
        fields.serialize_field("within_days", &report.within_days)?;
        fields.serialize_field("as_of_ms", &report.as_of_ms)?;
        fields.serialize_field("leads", &report.leads)?;
        fields.serialize_field("converted_in_time", &report.converted_in_time)?;
        fields.serialize_field("converted_late", &report.converted_late)?;
        fields.serialize_field("converted_before_lead", &report.converted_before_lead)?;
        fields.serialize_field("pending", &report.pending)?;
        fields.serialize_field("zombies", &report.zombies)?;
        fields.serialize_field("converted_after_lead", &report.converted_after_lead)?;
        fields.serialize_field(
            "median_days_lead_to_conversion",
            &report.median_days_lead_to_conversion,
        )?;
        fields.serialize_field("before_conversion", &report.before_conversion)?;
        fields.end()
    }
}

impl Table for Leads {
    fn csv(&self) -> String {
        self.0.to_csv()
    }
}

#[cfg(test)]
mod tests {
    use scribble_domain::journey::JourneySet;
    use scribble_domain::leads::LeadOptions;

    use super::*;

    #[test]
    fn the_lead_answer_is_the_report_without_zombie_customer_numbers() {
        let report = lead_follow_up(&JourneySet::default(), &LeadOptions::new(0)).unwrap();
        let mut expected = serde_json::to_value(&report).unwrap();
        expected.as_object_mut().unwrap().remove("zombie_customers");
        // A field the domain adds later must not go missing here unnoticed.
        assert_eq!(serde_json::to_value(Leads(report)).unwrap(), expected);
    }
}

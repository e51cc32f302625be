//! Lead follow-up: which leads (customers who submitted a form, started a chat, ...) converted
//! in time, which are still fresh, and which went cold without anyone closing them ("zombie
//! leads"); and what the leads who did convert did between the lead and the conversion. These
//! docs are the reference semantics a ClickHouse implementation must match.

use serde::Serialize;

use crate::funnel::{touchpoint_counts, TouchpointCount};
use crate::journey::JourneySet;
use crate::metrics::{median, ratio, DAY_MS};
use crate::render::{optional_cell, to_csv};

/// What makes a lead, what converts one, and how long a lead may take.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadOptions {
    /// A customer becomes a lead at their first step on any of these. Default `form_submit`
    /// and `chat_started`.
    pub lead_touchpoints: Vec<String>,
    /// A customer converts at their first step on this touchpoint. Default `purchase`.
    pub goal: String,
    /// How long after the lead a conversion still counts as in time; rounded to the
    /// millisecond. Default 30.
    pub within_days: f64,
    /// The moment the report is about, epoch milliseconds: callers pass the current time, or
    /// the latest event time. Steps after it are ignored, as if they had not happened yet.
    pub as_of_ms: i64,
}

impl LeadOptions {
    /// The default leads, goal and window, as of `as_of_ms`.
    pub fn new(as_of_ms: i64) -> Self {
        Self {
            lead_touchpoints: vec!["form_submit".to_owned(), "chat_started".to_owned()],
            goal: "purchase".to_owned(),
            within_days: 30.0,
            as_of_ms,
        }
    }
}

/// Why lead options were refused. Each message starts with the field it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LeadError {
    #[error("lead_touchpoints: list at least one touchpoint that makes a customer a lead")]
    NoLeadTouchpoints,
    #[error("goal: {0} is also a lead touchpoint; a lead cannot be its own conversion")]
    GoalIsLead(String),
    #[error("within_days: must be a positive number of days, not {0}")]
    WithinDays(f64),
}

/// How the leads fared. Every lead is in exactly one of `converted_in_time`, `converted_late`,
/// `converted_before_lead`, `pending` and `zombies`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadReport {
    pub goal: String,
    pub within_days: f64,
    pub as_of_ms: i64,
    /// Customers with a lead step at or before `as_of_ms`.
    pub leads: usize,
    /// Converted at most `within_days` after their first lead step.
    pub converted_in_time: usize,
    /// Converted, but more than `within_days` after their first lead step.
    pub converted_late: usize,
    /// Converted before their first lead step (already customers when they became leads).
    pub converted_before_lead: usize,
    /// Not converted, first lead step at most `within_days` before `as_of_ms`: too recent to
    /// judge.
    pub pending: usize,
    /// Not converted, first lead step more than `within_days` before `as_of_ms`: nobody closed
    /// them in time and they are still open.
    pub zombies: usize,
    /// The zombies' [`crate::journey::Journey::customer`] numbers, ascending; the caller maps
    /// them to names.
    pub zombie_customers: Vec<u32>,
    /// Customers who converted after their first lead step (`converted_in_time +
    /// converted_late`); the two fields below are about them.
    pub converted_after_lead: usize,
    /// Median days from the first lead step to the conversion.
    pub median_days_lead_to_conversion: Option<f64>,
    /// Per touchpoint: converters after a lead with a step on it strictly between their first
    /// lead step and their conversion (later lead steps included), `share` of
    /// `converted_after_lead`; most customers first, ties by name.
    pub before_conversion: Vec<TouchpointCount>,
}

/// The lead follow-up report of `set`; see [`LeadReport`] for what each number counts.
pub fn lead_follow_up(set: &JourneySet, opts: &LeadOptions) -> Result<LeadReport, LeadError> {
    if opts.lead_touchpoints.is_empty() {
        return Err(LeadError::NoLeadTouchpoints);
    }
    if opts.lead_touchpoints.contains(&opts.goal) {
        return Err(LeadError::GoalIsLead(opts.goal.clone()));
    }
    if !(opts.within_days.is_finite() && opts.within_days > 0.0) {
        return Err(LeadError::WithinDays(opts.within_days));
    }
    // A float-to-int `as` saturates, so an absurdly long window stays a long window.
    let window_ms = (opts.within_days * DAY_MS).round() as i64;
    let lead_symbols: Vec<_> = opts
        .lead_touchpoints
        .iter()
        .filter_map(|name| set.symbols.get(name))
        .collect();
    let goal = set.symbols.get(&opts.goal);

    let mut report = LeadReport {
        goal: opts.goal.clone(),
        within_days: opts.within_days,
        as_of_ms: opts.as_of_ms,
        leads: 0,
        converted_in_time: 0,
        converted_late: 0,
        converted_before_lead: 0,
        pending: 0,
        zombies: 0,
        zombie_customers: Vec::new(),
        converted_after_lead: 0,
        median_days_lead_to_conversion: None,
        before_conversion: Vec::new(),
    };
    let mut days_to_conversion = Vec::new();
    let mut between = Vec::new();
    for journey in &set.journeys {
        let seen = &journey.steps[..journey
            .steps
            .partition_point(|step| step.at_ms <= opts.as_of_ms)];
        let Some(lead) = seen
            .iter()
            .position(|step| lead_symbols.contains(&step.touchpoint))
        else {
            continue;
        };
        report.leads += 1;
        let lead_ms = seen[lead].at_ms;
        let conversion = journey
            .conversion_index(goal)
            .filter(|&index| index < seen.len());
        match conversion {
            Some(conversion) if conversion < lead => report.converted_before_lead += 1,
            Some(conversion) => {
                let elapsed_ms = seen[conversion].at_ms - lead_ms;
                if elapsed_ms <= window_ms {
                    report.converted_in_time += 1;
                } else {
                    report.converted_late += 1;
                }
                days_to_conversion.push(elapsed_ms as f64 / DAY_MS);
                between.push(&seen[lead + 1..conversion]);
            }
            None if opts.as_of_ms - lead_ms > window_ms => {
                report.zombies += 1;
                report.zombie_customers.push(journey.customer);
            }
            None => report.pending += 1,
        }
    }
    report.zombie_customers.sort_unstable();
    report.converted_after_lead = days_to_conversion.len();
    report.median_days_lead_to_conversion = median(&mut days_to_conversion);
    report.before_conversion = touchpoint_counts(set, between);
    Ok(report)
}

impl LeadReport {
    /// One table: rows `outcome` (each outcome's customers and share of the leads), then
    /// `before_conversion` (each touchpoint's customers and share of the converters after a
    /// lead), then `lead_to_conversion,median_days` with its `value`. The zombie list is left
    /// out: its customer numbers mean nothing until the caller maps them to names.
    pub fn to_csv(&self) -> String {
        let outcomes = [
            ("converted_in_time", self.converted_in_time),
            ("converted_late", self.converted_late),
            ("converted_before_lead", self.converted_before_lead),
            ("pending", self.pending),
            ("zombies", self.zombies),
        ];
        let mut rows: Vec<Vec<String>> = outcomes
            .into_iter()
            .map(|(outcome, customers)| {
                vec![
                    "outcome".to_owned(),
                    outcome.to_owned(),
                    customers.to_string(),
                    ratio(customers, self.leads).to_string(),
                    String::new(),
                ]
            })
            .collect();
        rows.extend(self.before_conversion.iter().map(|count| {
            vec![
                "before_conversion".to_owned(),
                count.touchpoint.clone(),
                count.customers.to_string(),
                count.share.to_string(),
                String::new(),
            ]
        }));
        rows.push(vec![
            "lead_to_conversion".to_owned(),
            "median_days".to_owned(),
            String::new(),
            String::new(),
            optional_cell(self.median_days_lead_to_conversion),
        ]);
        to_csv(&["section", "item", "customers", "share", "value"], rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// Ten customers, numbered in order, with `(touchpoint, day)` steps.
    fn journeys() -> JourneySet {
        let customers: [&[(&str, i64)]; 10] = [
            // 0 ann: lead day 10, buys day 20: in time; email and visit between.
            &[
                ("site_visit", 0),
                ("form_submit", 10),
                ("email_open", 12),
                ("site_visit", 15),
                ("purchase", 20),
            ],
            // 1 bob: lead day 5, nothing since, 95 days before day 100: zombie.
            &[("form_submit", 5)],
            // 2 cy: chat on day 80, 20 days ago: pending.
            &[("chat_started", 80), ("site_visit", 85)],
            // 3 dee: bought before becoming a lead.
            &[("purchase", 1), ("form_submit", 50)],
            // 4 eve: lead day 10, buys day 60: late; visit and email between.
            &[
                ("form_submit", 10),
                ("site_visit", 30),
                ("email_open", 45),
                ("purchase", 60),
            ],
            // 5 fay: never a lead.
            &[("site_visit", 0), ("purchase", 3)],
            // 6 gus: lead day 69, 31 days ago: zombie.
            &[("form_submit", 69), ("email_open", 70)],
            // 7 hal: lead day 70, exactly 30 days ago: still pending.
            &[("form_submit", 70)],
            // 8 ida: lead day 90; the purchase on day 120 is after day 100: pending.
            &[("form_submit", 90), ("purchase", 120)],
            // 9 jo: chat day 30 (the first lead step), form day 31, buys day 60: exactly 30
            // days, in time; the form between.
            &[("chat_started", 30), ("form_submit", 31), ("purchase", 60)],
        ];
        JourneySet::from_sequences(customers.iter().map(|steps| {
            steps
                .iter()
                .map(|&(touchpoint, day)| (touchpoint, "web", day * DAY))
                .collect()
        }))
    }

    #[test]
    fn leads_are_in_time_late_pending_or_zombies() {
        let report = lead_follow_up(&journeys(), &LeadOptions::new(100 * DAY)).unwrap();
        assert_eq!(report.leads, 9);
        assert_eq!(
            (
                report.converted_in_time,
                report.converted_late,
                report.converted_before_lead,
                report.pending,
                report.zombies
            ),
            (2, 1, 1, 3, 2)
        );
        assert_eq!(report.zombie_customers, [1, 6]);
        // ann 10 days, jo 30, eve 50.
        assert_eq!(report.converted_after_lead, 3);
        assert_eq!(report.median_days_lead_to_conversion, Some(30.0));
        let between: Vec<(&str, usize)> = report
            .before_conversion
            .iter()
            .map(|count| (count.touchpoint.as_str(), count.customers))
            .collect();
        assert_eq!(
            between,
            [("email_open", 2), ("site_visit", 2), ("form_submit", 1)]
        );
        assert_eq!(
            report.to_csv(),
            "section,item,customers,share,value\r\n\
             outcome,converted_in_time,2,0.2222222222222222,\r\n\
             outcome,converted_late,1,0.1111111111111111,\r\n\
             outcome,converted_before_lead,1,0.1111111111111111,\r\n\
             outcome,pending,3,0.3333333333333333,\r\n\
             outcome,zombies,2,0.2222222222222222,\r\n\
             before_conversion,email_open,2,0.6666666666666666,\r\n\
             before_conversion,site_visit,2,0.6666666666666666,\r\n\
             before_conversion,form_submit,1,0.3333333333333333,\r\n\
             lead_to_conversion,median_days,,,30\r\n"
        );
    }

    #[test]
    fn the_window_and_the_leads_are_the_callers_choice() {
        // Within 40 days: eve (50) is still late, jo in time; gus (31 days ago) and hal are
        // now pending, bob (95) is still a zombie.
        let mut opts = LeadOptions::new(100 * DAY);
        opts.within_days = 40.0;
        let report = lead_follow_up(&journeys(), &opts).unwrap();
        assert_eq!(
            (
                report.converted_late,
                report.pending,
                report.zombie_customers
            ),
            (1, 4, vec![1])
        );
        // Only chats are leads: cy (pending) and jo (in time, the form between).
        opts.lead_touchpoints = vec!["chat_started".to_owned()];
        let report = lead_follow_up(&journeys(), &opts).unwrap();
        assert_eq!(
            (report.leads, report.converted_in_time, report.pending),
            (2, 1, 1)
        );
        assert_eq!(report.before_conversion[0].touchpoint, "form_submit");
        assert_eq!(report.before_conversion[0].share, 1.0);
    }

    #[test]
    fn the_window_rounds_to_the_millisecond_and_never_overflows() {
        // 0.4 ms short of 30 days rounds to 30 days, so jo (exactly 30 days) is still in time.
        let mut opts = LeadOptions::new(100 * DAY);
        opts.within_days = 30.0 - 0.4 / 86_400_000.0;
        let report = lead_follow_up(&journeys(), &opts).unwrap();
        assert_eq!((report.converted_in_time, report.converted_late), (2, 1));
        // A window too long for milliseconds in an i64 is forever: nobody is late or a zombie.
        opts.within_days = f64::MAX;
        let report = lead_follow_up(&journeys(), &opts).unwrap();
        assert_eq!(
            (
                report.converted_in_time,
                report.converted_late,
                report.zombies
            ),
            (3, 0, 0)
        );
    }

    #[test]
    fn leads_count_up_to_and_including_as_of() {
        // On day 5 bob's form, sent that day, is the only lead so far.
        let report = lead_follow_up(&journeys(), &LeadOptions::new(5 * DAY)).unwrap();
        assert_eq!((report.leads, report.pending), (1, 1));
    }

    #[test]
    fn zombies_are_listed_by_customer_number_whatever_the_journey_order() {
        let mut set = journeys();
        set.journeys.reverse();
        let report = lead_follow_up(&set, &LeadOptions::new(100 * DAY)).unwrap();
        assert_eq!(report.zombie_customers, [1, 6]);
    }

    #[test]
    fn options_are_checked_and_name_the_field() {
        let set = journeys();
        let mut opts = LeadOptions::new(100 * DAY);
        opts.lead_touchpoints.clear();
        let error = lead_follow_up(&set, &opts).unwrap_err();
        assert_eq!(error, LeadError::NoLeadTouchpoints);
        assert!(
            error.to_string().starts_with("lead_touchpoints: "),
            "{error}"
        );
        let mut opts = LeadOptions::new(100 * DAY);
        opts.goal = "form_submit".to_owned();
        let error = lead_follow_up(&set, &opts).unwrap_err();
        assert!(error.to_string().starts_with("goal: "), "{error}");
        for days in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut opts = LeadOptions::new(100 * DAY);
            opts.within_days = days;
            let error = lead_follow_up(&set, &opts).unwrap_err();
            assert!(error.to_string().starts_with("within_days: "), "{error}");
        }
    }

    #[test]
    fn without_leads_or_goal_the_report_is_empty() {
        let mut opts = LeadOptions::new(100 * DAY);
        opts.goal = "webinar".to_owned();
        let report = lead_follow_up(&journeys(), &opts).unwrap();
        // No conversions at all, so every lead is pending or a zombie by the age of its first
        // lead step on day 100: pending cy (80), hal (70), ida (90); zombies the other six.
        assert_eq!(report.pending, 3);
        assert_eq!(report.zombie_customers, [0, 1, 3, 4, 6, 9]);
        assert_eq!(report.converted_after_lead, 0);
        assert_eq!(report.median_days_lead_to_conversion, None);
        assert!(report.before_conversion.is_empty());
        assert_eq!(report.zombies, 6);
        let before_any = lead_follow_up(&journeys(), &LeadOptions::new(0)).unwrap();
        assert_eq!(before_any.leads, 0);
        assert!(before_any.to_csv().contains("outcome,zombies,0,0,\r\n"));
    }
}

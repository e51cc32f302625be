//! Journeys as reports read them: per customer, the touchpoints in event-time order, with names
//! interned. Built by [`crate::stitch::JourneyBook::journeys`].

use crate::symbols::{Sym, Symbols};

/// One touchpoint in a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Event time, epoch milliseconds.
    pub at_ms: i64,
    pub touchpoint: Sym,
    pub channel: Sym,
    /// Index of the step's properties in [`JourneySet::properties`].
    pub touch: u32,
}

/// One customer's stitched journey. `steps` is sorted by event time (ties by touchpoint, channel,
/// then event id) and never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journey {
    /// Dense customer number within one [`JourneySet`]; stable only for that set.
    pub customer: u32,
    pub steps: Vec<Step>,
}

impl Journey {
    /// Where the customer converts: the index of the first step with touchpoint `goal`; `None`
    /// without a goal or when the journey never reaches it. The steps before it are the touches
    /// that led to the conversion.
    pub fn conversion_index(&self, goal: Option<Sym>) -> Option<usize> {
        let goal = goal?;
        self.steps.iter().position(|step| step.touchpoint == goal)
    }
}

/// The journeys a report runs over, with the names their symbols stand for.
#[derive(Debug, Clone, Default)]
pub struct JourneySet {
    pub journeys: Vec<Journey>,
    pub symbols: Symbols,
    /// Per step (indexed by [`Step::touch`]): its top-level scalar properties as interned
    /// `(key, value)` pairs, values as the text filters compare. May be empty when the set was
    /// built without properties; then every step has none.
    pub properties: Vec<Box<[(Sym, Sym)]>>,
}

impl JourneySet {
    /// Builds a set from plain `(touchpoint, channel, at_ms)` sequences, one per customer;
    /// used by tests, benchmarks and callers that already hold ordered journeys.
    pub fn from_sequences<'a>(
        sequences: impl IntoIterator<Item = Vec<(&'a str, &'a str, i64)>>,
    ) -> Self {
        let mut symbols = Symbols::new();
        let mut journeys = Vec::new();
        for (customer, sequence) in sequences.into_iter().enumerate() {
            if sequence.is_empty() {
                continue;
            }
            let mut steps: Vec<Step> = sequence
                .into_iter()
                .map(|(touchpoint, channel, at_ms)| Step {
                    at_ms,
                    touchpoint: symbols.intern(touchpoint),
                    channel: symbols.intern(channel),
                    touch: 0,
                })
                .collect();
            steps.sort_by_key(|step| step.at_ms);
            journeys.push(Journey {
                customer: customer as u32,
                steps,
            });
        }
        Self {
            journeys,
            symbols,
            properties: Vec::new(),
        }
    }

    /// The value of property `key` on `step`, as text (numbers as written, booleans as
    /// `true`/`false`); `None` when the step has no such scalar property.
    pub fn property(&self, step: &Step, key: &str) -> Option<&str> {
        let key = self.symbols.get(key)?;
        self.properties
            .get(step.touch as usize)?
            .iter()
            .find(|(name, _)| *name == key)
            .map(|&(_, value)| self.symbols.name(value))
    }

    pub fn event_count(&self) -> usize {
        self.journeys
            .iter()
            .map(|journey| journey.steps.len())
            .sum()
    }
}

/// Splits a journey into sessions: a new session starts after more than `gap_ms` of inactivity.
/// Takes the event times in journey order; returns the session number (from 1) of each.
pub fn session_numbers(times: impl IntoIterator<Item = i64>, gap_ms: i64) -> Vec<u32> {
    let mut session = 0;
    let mut previous: Option<i64> = None;
    times
        .into_iter()
        .map(|at_ms| {
            if previous.is_none_or(|at| at_ms - at > gap_ms) {
                session += 1;
            }
            previous = Some(at_ms);
            session
        })
        .collect()
}

/// Thirty minutes, the default session gap.
pub const DEFAULT_SESSION_GAP_MS: i64 = 30 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_split_after_the_gap_only() {
        let minute = 60_000;
        let set = JourneySet::from_sequences([vec![
            ("a", "web", 0),
            ("b", "web", 10 * minute),
            ("c", "web", 40 * minute),
            ("d", "web", 71 * minute),
            ("e", "web", 100 * minute),
        ]]);
        let times = set.journeys[0].steps.iter().map(|step| step.at_ms);
        let numbers = session_numbers(times, DEFAULT_SESSION_GAP_MS);
        assert_eq!(numbers, vec![1, 1, 1, 2, 2]);
    }
}

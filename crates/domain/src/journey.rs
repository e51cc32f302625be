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

/// Runs `a` on this thread and `b` on another one at the same time; both results. A panic in
/// either goes on in the caller.
pub fn on_two_threads<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let mine = a();
        let theirs = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (mine, theirs)
    })
}

/// Sets with fewer journeys than twice this are counted on one thread: a second thread costs
/// more than it saves there.
const JOURNEYS_PER_THREAD: usize = 50_000;

impl JourneySet {
    /// `count` over every journey: for a large set on two threads, each counting half the
    /// journeys, then the halves' counts joined by `join` (the first half's first). For reports
    /// whose counts join exactly, so that the answer does not depend on the split; a million
    /// journeys take well under a second to count, and the machines Scribble runs on have two
    /// cores or more.
    pub fn count_in_halves<T: Send>(
        &self,
        count: impl Fn(&[Journey]) -> T + Sync,
        join: impl FnOnce(T, T) -> T,
    ) -> T {
        if self.journeys.len() < 2 * JOURNEYS_PER_THREAD {
            return count(&self.journeys);
        }
        let (first, second) = self.journeys.split_at(self.journeys.len() / 2);
        let (first, second) = on_two_threads(|| count(first), || count(second));
        join(first, second)
    }

    /// This set's journeys `copies` times over, one after another, renumbered: a large set
    /// whose reports are this one's scaled, for tests of counting on two threads.
    #[cfg(test)]
    pub(crate) fn repeated(&self, copies: usize) -> Self {
        let journeys = self
            .journeys
            .iter()
            .cycle()
            .take(self.journeys.len() * copies)
            .enumerate()
            .map(|(customer, journey)| Journey {
                customer: customer as u32,
                steps: journey.steps.clone(),
            })
            .collect();
        Self {
            journeys,
            symbols: self.symbols.clone(),
            properties: self.properties.clone(),
        }
    }

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
    fn counting_in_halves_counts_every_journey_once_in_order() {
        let small = JourneySet::from_sequences([vec![("a", "web", 0)], vec![("b", "web", 1)]]);
        for copies in [1, JOURNEYS_PER_THREAD + 1] {
            let set = small.repeated(copies);
            let customers = set.count_in_halves(
                |journeys| journeys.iter().map(|journey| journey.customer).collect(),
                |mut first: Vec<u32>, second| {
                    first.extend(second);
                    first
                },
            );
            let expected: Vec<u32> = (0..set.journeys.len() as u32).collect();
            assert!(
                customers == expected,
                "{copies} copies: counted out of order"
            );
        }
    }

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

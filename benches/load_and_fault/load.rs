//! The open-loop load: batches of events with ids of our own, sent on a fixed schedule whatever
//! the replies (a late start is counted, never skipped), each retried after a refusal until it is
//! acknowledged or the retry window closes. Only a 2xx acknowledges a batch's ids.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use serde::Serialize;
use uuid::Uuid;

/// A send that starts this much after its slot counts as late.
const LATE: Duration = Duration::from_millis(10);
/// Wait before retrying a request that got no HTTP answer (refused or broken connection).
const RECONNECT_WAIT: Duration = Duration::from_millis(250);
/// Longest `Retry-After` honoured, so a retry still lands inside short runs.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(5);
/// A request without any answer for this long counts as timed out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Events per visitor over a run, spread over its length: a journey of a realistic length. (The
/// ClickHouse store rewrites a visitor's whole journey fragment for each batch naming it, so
/// hundreds of events per visitor would slow its worker down.)
const EVENTS_PER_VISITOR: f64 = 8.0;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// `http://ADDR/v1/events` of the collector.
    pub url: String,
    pub write_key: String,
    pub events_per_second: f64,
    pub batch: usize,
    pub duration: Duration,
    /// Whether a refused batch is sent again (same ids, same timestamps) until acknowledged.
    pub retry: bool,
    /// How long after the schedule ends refused batches may still be retried.
    pub retry_window: Duration,
}

/// The answers of one run, as the sender saw them.
#[derive(Debug, Default)]
pub struct Tally {
    /// Events scheduled, each with its own id.
    pub offered: u64,
    /// Ids of every event a 2xx acknowledged, once each.
    pub acknowledged: Vec<Uuid>,
    /// Requests sent, retries included.
    pub attempts: u64,
    /// Refused attempts by reason (`503 bus_unavailable`, `connection refused`, ...): requests
    /// and the events they carried.
    pub refused: BTreeMap<String, Refusals>,
    /// Events whose batch was never acknowledged (refused with retries off, or still refused
    /// when the retry window closed).
    pub given_up: u64,
    /// Sends that started more than [`LATE`] after their slot, and the latest start.
    pub late_sends: u64,
    pub worst_lateness: Duration,
    /// Time from sending to the answer, in microseconds, of 2xx answers and of refusals.
    pub accepted_latency_us: Vec<u64>,
    pub refused_latency_us: Vec<u64>,
}

/// Refused requests of one reason and the events they carried.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refusals {
    pub requests: u64,
    pub events: u64,
}

impl Tally {
    /// Refused attempts of every reason.
    pub fn refused_requests(&self) -> u64 {
        self.refused
            .values()
            .map(|refusals| refusals.requests)
            .sum()
    }

    /// Refused attempts whose reason starts with `prefix` (`"503"`).
    pub fn refused_requests_starting(&self, prefix: &str) -> u64 {
        self.refused
            .iter()
            .filter(|(reason, _)| reason.starts_with(prefix))
            .map(|(_, refusals)| refusals.requests)
            .sum()
    }
}

/// One event as the wire takes it.
#[derive(Serialize)]
struct WireEvent {
    event_id: Uuid,
    timestamp: String,
    touchpoint: &'static str,
    anonymous_id: String,
}

/// Sends `plan`'s load and returns what came back. Runs until the schedule ended and every
/// batch was acknowledged or given up.
pub async fn run(plan: LoadPlan) -> Tally {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let slot = Duration::from_secs_f64(plan.batch as f64 / plan.events_per_second);
    let started = Instant::now();
    let schedule_ends = started + plan.duration;
    let give_up_at = schedule_ends + plan.retry_window;
    let visitors =
        (plan.events_per_second * plan.duration.as_secs_f64() / EVENTS_PER_VISITOR).max(1.0) as u64;
    let plan = Arc::new(plan);
    let mut sends = Vec::new();
    for number in 0u64.. {
        let due = started + slot.mul_f64(number as f64);
        if due >= schedule_ends {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let lateness = due.elapsed();
        {
            let mut tally = tally.lock().unwrap();
            tally.offered += plan.batch as u64;
            if lateness > LATE {
                tally.late_sends += 1;
                tally.worst_lateness = tally.worst_lateness.max(lateness);
            }
        }
        let (client, plan, tally) = (client.clone(), plan.clone(), tally.clone());
        sends.push(tokio::spawn(async move {
            let (ids, body) = batch(number, plan.batch, visitors);
            deliver(&client, &plan, ids, body, give_up_at, &tally).await;
        }));
    }
    for send in sends {
        send.await.expect("send task");
    }
    Arc::try_unwrap(tally)
        .expect("every send finished")
        .into_inner()
        .unwrap()
}

/// `size` new events timestamped now, each of one of `visitors` visitors, their ids and the
/// request body.
fn batch(number: u64, size: usize, visitors: u64) -> (Vec<Uuid>, bytes::Bytes) {
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let events: Vec<WireEvent> = (0..size as u64)
        .map(|i| WireEvent {
            event_id: Uuid::new_v4(),
            timestamp: timestamp.clone(),
            touchpoint: if i % 3 == 0 {
                "email_open"
            } else {
                "site_visit"
            },
            anonymous_id: format!("visitor-{}", (number * 7919 + i) % visitors),
        })
        .collect();
    let ids = events.iter().map(|event| event.event_id).collect();
    let body = serde_json::to_vec(&events).expect("encode a batch");
    (ids, body.into())
}

/// How one attempt ended.
enum Answer {
    Accepted,
    Refused { reason: String, wait: Duration },
}

/// Sends one batch until a 2xx, retrying refusals while `plan.retry` and before `give_up_at`.
async fn deliver(
    client: &reqwest::Client,
    plan: &LoadPlan,
    ids: Vec<Uuid>,
    body: bytes::Bytes,
    give_up_at: Instant,
    tally: &Mutex<Tally>,
) {
    let events = ids.len() as u64;
    loop {
        let sent = Instant::now();
        let answer = attempt(client, plan, body.clone(), ids.len()).await;
        let latency_us = sent.elapsed().as_micros() as u64;
        let wait = {
            let mut counts = tally.lock().unwrap();
            counts.attempts += 1;
            match answer {
                Answer::Accepted => {
                    counts.accepted_latency_us.push(latency_us);
                    counts.acknowledged.extend_from_slice(&ids);
                    return;
                }
                Answer::Refused { reason, wait } => {
                    counts.refused_latency_us.push(latency_us);
                    let refusals = counts.refused.entry(reason).or_default();
                    refusals.requests += 1;
                    refusals.events += events;
                    if !plan.retry || Instant::now() + wait > give_up_at {
                        counts.given_up += events;
                        return;
                    }
                    wait
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One POST of `body` (`events` events) and what its answer means for the sender.
async fn attempt(
    client: &reqwest::Client,
    plan: &LoadPlan,
    body: bytes::Bytes,
    events: usize,
) -> Answer {
    let reply = client
        .post(&plan.url)
        .bearer_auth(&plan.write_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => {
            let reason = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect failed"
            } else {
                "connection broken"
            };
            return Answer::Refused {
                reason: reason.into(),
                wait: RECONNECT_WAIT,
            };
        }
    };
    let status = reply.status();
    let wait = reply
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .map_or(RECONNECT_WAIT, |seconds| {
            Duration::from_secs(seconds).min(LONGEST_RETRY_WAIT)
        });
    let answer: serde_json::Value = reply.json().await.unwrap_or_default();
    if status.is_success() {
        // A batch the collector only partly took would be a bug of this script's events.
        assert_eq!(
            answer["accepted"].as_u64(),
            Some(events as u64),
            "the collector rejected generated events: {answer}"
        );
        return Answer::Accepted;
    }
    let code = answer["error"].as_str().unwrap_or("(no code)");
    // Only overload, rate limits and outages are worth a retry; anything else is this script's
    // mistake (a wrong key, a malformed body), and retrying would hide it.
    assert!(
        status.is_server_error() || status.as_u16() == 429,
        "the collector refused the script's request: {status} {answer}"
    );
    Answer::Refused {
        reason: format!("{} {code}", status.as_u16()),
        wait,
    }
}

/// The `share` quantile (0..=1) of `values`, in milliseconds; `None` when there are none.
pub fn quantile_ms(values: &mut [u64], share: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * share).round() as usize;
    Some(values[index] as f64 / 1000.0)
}

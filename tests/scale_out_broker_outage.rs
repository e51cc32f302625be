//! A scale-out fault through the real processes: the Kafka broker is paused (SIGSTOP) in the
//! middle of a load and resumed. Meanwhile the collector answers 503 with `Retry-After`, never
//! 2xx for an event the broker did not acknowledge; afterwards every acknowledged event is in the
//! reports, once. The broker is a private tansu, so pausing it disturbs no other test; ClickHouse
//! is the real server of `scripts/test`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scale_out::{Stack, JOIN_PATIENCE};
use common::{batch, Acknowledged, Server};

#[test]
fn broker_paused_during_load_gives_503s_and_every_acknowledged_event_arrives_once() {
    let stack = Stack::new();
    let broker = stack.broker();
    let server = Server::start_scale_out(&stack);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Acknowledged>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..2)
        .map(|sender| {
            let (collector, stop, acknowledged, refused) = (
                server.collector.clone(),
                stop.clone(),
                acknowledged.clone(),
                refused.clone(),
            );
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                for round in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let customer = format!("outage-{sender}-{round}");
                    let (ids, body) = batch(&customer, 20);
                    let reply = http
                        .post(format!("{collector}/v1/events"))
                        .bearer_auth(common::WRITE_KEY)
                        .json(&body)
                        .send()
                        .expect("the collector answers even while the broker is down");
                    match reply.status().as_u16() {
                        200 => acknowledged.lock().unwrap().push((customer, ids)),
                        503 => {
                            assert!(
                                reply.headers().contains_key("retry-after"),
                                "a 503 says when to retry"
                            );
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected status {other}"),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    broker.pause();
    std::thread::sleep(Duration::from_secs(7));
    broker.resume();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    senders
        .into_iter()
        .for_each(|sender| sender.join().unwrap());

    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "requests during the pause were refused with 503"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 4,
        "batches landed before and after the pause"
    );
    let total = acknowledged.len() as u64 * 20;
    // Events refused with a 503 may still land later (a retry would be deduplicated), so the
    // reports hold at least every acknowledged event.
    server.wait_up_to(JOIN_PATIENCE, "/v1/touchpoints", |body| {
        body["events"].as_u64().unwrap_or(0) >= total
    });
    server.assert_each_acknowledged_event_once(&acknowledged);
}

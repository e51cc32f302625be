//! Durability: every event the collector acknowledged with a 2xx survives `kill -9` of the
//! process in the middle of a load, and shows up in reports after a restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use common::{batch, Acknowledged, Server};

#[test]
fn acknowledged_events_survive_kill_9_and_restart() {
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let collector = server.collector.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Acknowledged>> = Arc::default();
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (collector, stop, acknowledged) =
                (collector.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for round in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let customer = format!("load-{sender}-{round}");
                    let (ids, events) = batch(&customer, 100);
                    let reply = http
                        .post(format!("{collector}/v1/events"))
                        .bearer_auth(common::WRITE_KEY)
                        .json(&events)
                        .send();
                    match reply {
                        Ok(response) if response.status().is_success() => {
                            acknowledged.lock().unwrap().push((customer, ids))
                        }
                        _ => return, // the server is gone: this batch was never acknowledged
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    senders
        .into_iter()
        .for_each(|sender| sender.join().unwrap());

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 4,
        "the load should have landed a few batches before the kill"
    );
    let restarted = Server::start(&data_dir);
    let total = acknowledged.len() as u64 * 100;
    // Batches in flight at the kill may also have been stored: at least every acknowledged one.
    restarted.wait_until("/v1/touchpoints", |body| {
        body["events"].as_u64().unwrap_or(0) >= total
    });
    restarted.assert_each_acknowledged_event_once(&acknowledged);
}

#[test]
fn sigterm_stops_cleanly_and_the_data_stays() {
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"touchpoint": "site_visit", "anonymous_id": format!("visitor-{}", i % 3)}))
        .collect();
    let (status, reply) = server.post_events(&Value::Array(events));
    assert_eq!(status, 200, "{reply}");
    server.wait_until("/v1/touchpoints", |body| body["events"] == 10);
    let exit = server.terminate();
    assert!(exit.success(), "scribble exited with {exit} on SIGTERM");
    let restarted = Server::start(&data_dir);
    let (_, body) = restarted.get("/v1/touchpoints");
    assert_eq!(body["events"], 10);
    assert_eq!(body["customers"], 3);
}

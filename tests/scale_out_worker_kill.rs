//! A scale-out fault: a worker killed with SIGKILL in the middle of a load, and a new one started,
//! lose nothing and count nothing twice. ClickHouse is the real server of `scripts/test`; the
//! broker is librdkafka's mock cluster, because tansu 0.6.0 never hands a dead member's partitions
//! to the rest of its consumer group (its group sessions do not expire), so the fault cannot be
//! staged on it. The mock cluster listens on loopback, and the real `scribble` processes use it
//! like any broker.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::mocking::MockCluster;

use common::scale_out::{Stack, JOIN_PATIENCE};
use common::{batch, start_worker, Server};

#[test]
fn worker_killed_mid_load_and_restarted_loses_nothing_and_counts_nothing_twice() {
    let broker = MockCluster::new(1).expect("start librdkafka's mock cluster");
    let stack = Stack::with_brokers(&broker.bootstrap_servers());
    broker
        .create_topic(&stack.topic, 3, 1)
        .expect("create the topic on the mock cluster");
    let mut server = Server::start_scale_out_without_worker(&stack);
    let mut worker = start_worker(&stack);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(0u64));
    let collector = server.collector.clone();
    let senders: Vec<_> = (0..3)
        .map(|sender| {
            let (collector, stop, acknowledged) =
                (collector.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for round in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (ids, body) = batch(&format!("load-{sender}-{}", round % 7), 100);
                    let reply = http
                        .post(format!("{collector}/v1/events"))
                        .bearer_auth(common::WRITE_KEY)
                        .json(&body)
                        .send()
                        .unwrap();
                    assert_eq!(
                        reply.status(),
                        200,
                        "the broker is up: every batch is acknowledged"
                    );
                    *acknowledged.lock().unwrap() += ids.len() as u64;
                    // A steady load, not a flood: the point is the kill, not the throughput.
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    worker.kill().unwrap();
    worker.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let restarted = start_worker(&stack);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    senders
        .into_iter()
        .for_each(|sender| sender.join().unwrap());

    let total = *acknowledged.lock().unwrap();
    assert!(
        total >= 300,
        "the load should have landed batches before the kill"
    );
    // The killed worker's session must expire (10 s) before its partitions move.
    let answer = server.wait_up_to(JOIN_PATIENCE, "/v1/touchpoints", |body| {
        body["events"].as_u64() == Some(total)
    });
    assert_eq!(answer["customers"], 21);
    server.adopt(restarted);
}

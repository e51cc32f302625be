//! The event bus on Kafka, for the scale-out deployment: [`KafkaSink`] is the collector's
//! [`EventSink`], [`KafkaEventSource`] is what the stream worker reads, and [`DeadLetters`] keeps
//! messages the worker cannot decode. Each message is one [`Envelope`] as JSON.
//!
//! rdkafka's types stay in this module: the consumer hands out [`Delivery`] values and every
//! failure becomes a [`BusError`], so callers never see a raw Kafka message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use scribble_domain::event::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::{BusError, EventSink};

/// How long librdkafka keeps trying to deliver a message (`message.timeout.ms`), well past the
/// time callers wait for it. A message that times out after it was sent makes an idempotent
/// producer bump its epoch, which some Kafka-API brokers (tansu 0.6) cannot handle; a long
/// delivery timeout avoids that during short outages, and the bytes such messages hold stay
/// counted against [`KafkaConfig::max_in_flight_bytes`] until librdkafka lets go of them.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `append` waits for room under the in-flight bound before answering `Busy`.
const BUSY_WAIT: Duration = Duration::from_millis(100);
/// How often the background probe asks the broker for metadata.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long one metadata probe may take before the broker counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Header of a dead letter that says why it could not be processed.
pub const REASON_HEADER: &str = "scribble-reason";

/// Where and how the collector produces events.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The events topic.
    pub topic: String,
    /// How long an append waits for the acknowledgement of all in-sync replicas before it fails
    /// with [`BusError::Unavailable`]. librdkafka goes on delivering such messages for two
    /// minutes, so a failed append may still land: senders retry, and the worker drops
    /// duplicates by event id.
    pub ack_timeout: Duration,
    /// Most payload bytes waiting for acknowledgement at once; beyond it appends answer
    /// [`BusError::Busy`] so memory stays flat while the broker is slow or down.
    pub max_in_flight_bytes: usize,
}

impl KafkaConfig {
    /// `brokers` and `topic` with the defaults: 5 s acknowledgement timeout, 64 MiB in flight.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            ack_timeout: Duration::from_secs(5),
            max_in_flight_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One message on the events topic: an event and the project it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub project: String,
    pub event: Event,
}

/// An [`Envelope`] as it is written: borrowed, so producing serializes events without copying
/// them first. Same fields, same JSON.
#[derive(Serialize)]
struct OutgoingEnvelope<'a> {
    project: &'a str,
    event: &'a Event,
}

/// Creates `topic` with `partitions` partitions (replication factor 1) unless it already exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), BusError> {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    // An existing topic (created by an operator, or by another process) needs no admin request,
    // which not every broker answers.
    let admin = Arc::new(admin);
    let probe = admin.clone();
    let probed_topic = topic.to_owned();
    let exists = tokio::task::spawn_blocking(move || {
        probe
            .inner()
            .fetch_metadata(Some(&probed_topic), Duration::from_secs(5))
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|found| found.error().is_none() && !found.partitions().is_empty())
            })
    })
    .await
    .map_err(|error| BusError::Unavailable(error.to_string()))??;
    if exists {
        return Ok(());
    }
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new_topic], &options).await? {
        match result {
            Ok(_) => debug!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code).into()),
        }
    }
    Ok(())
}

/// A producer that only returns once every replica in sync has the message, and never writes a
/// message twice when it retries (idempotence).
fn reliable_producer(brokers: &str) -> Result<FutureProducer, BusError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        // A few milliseconds let concurrent requests share one produce request.
        .set("linger.ms", "5")
        .create()?)
}

/// The partitioning key of `event`: `"{project}/{routing id}"`, where the routing id is the
/// anonymous id if the event has one, else the user id (empty if it has neither).
///
/// One visitor's events therefore stay in order on one partition. Events of different identities
/// of the same customer may land on different partitions and be read in any order; that is fine
/// because identity stitching does not depend on the order events arrive in.
pub fn message_key(project: &str, event: &Event) -> String {
    let routing_id = event
        .who
        .anonymous_id
        .as_deref()
        .or(event.who.user_id.as_deref())
        .unwrap_or_default();
    format!("{project}/{routing_id}")
}

/// The collector's [`EventSink`] on Kafka. Must be created inside a Tokio runtime: it starts a
/// background task that probes the broker every 2 s for [`EventSink::is_ready`], stopped when the
/// sink is dropped.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    ack_timeout: Duration,
    in_flight: Arc<Semaphore>,
    max_in_flight_bytes: usize,
    ready: Arc<AtomicBool>,
    probe: JoinHandle<()>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .field("free_bytes", &self.in_flight.available_permits())
            .finish()
    }
}

impl KafkaSink {
    /// A sink producing to `config.topic`. Connecting happens in the background: the sink is not
    /// ready until the first probe or delivery succeeds.
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let producer = reliable_producer(&config.brokers)?;
        let ready = Arc::new(AtomicBool::new(false));
        let probe = tokio::spawn(probe_broker(
            producer.clone(),
            config.topic.clone(),
            ready.clone(),
        ));
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            ack_timeout: config.ack_timeout,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight_bytes)),
            max_in_flight_bytes: config.max_in_flight_bytes,
            ready,
            probe,
        })
    }

    /// Takes `bytes` of the in-flight bound, waiting at most [`BUSY_WAIT`] for room. No room
    /// is `Busy` while the broker answers, and `Unavailable` while it does not (the bytes then
    /// wait for a broker that is away, not for a busy one).
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, BusError> {
        if bytes > self.max_in_flight_bytes {
            return Err(BusError::Busy);
        }
        let permits = u32::try_from(bytes).map_err(|_| BusError::Busy)?;
        let acquire = self.in_flight.clone().acquire_many_owned(permits);
        match tokio::time::timeout(BUSY_WAIT, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(BusError::Closed),
            Err(_elapsed) if self.is_ready() => Err(BusError::Busy),
            Err(_elapsed) => Err(BusError::Unavailable(format!(
                "the broker is not answering and {} bytes already wait for it",
                self.max_in_flight_bytes - self.in_flight.available_permits()
            ))),
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

#[async_trait]
impl EventSink for KafkaSink {
    /// Sends every event at once and returns `Ok` only after each one is acknowledged by all
    /// in-sync replicas. A failed or late acknowledgement of any of them fails the whole call
    /// ([`BusError::Unavailable`]); the sender retries, and the worker drops duplicates by id.
    async fn append(&self, project: &str, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let messages: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|event| {
                let payload = serde_json::to_vec(&OutgoingEnvelope { project, event })
                    .expect("an event always serializes to JSON: its maps have string keys");
                (message_key(project, event), payload)
            })
            .collect();
        let bytes = messages.iter().map(|(_, payload)| payload.len()).sum();
        let permit = self.reserve(bytes).await?;

        let mut pending = Vec::with_capacity(messages.len());
        let mut enqueue_error = None;
        for (key, payload) in &messages {
            let record = FutureRecord::to(&self.topic).key(key).payload(payload);
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    enqueue_error = Some(BusError::Busy);
                    break;
                }
                Err((error, _)) => {
                    enqueue_error = Some(BusError::Unavailable(error.to_string()));
                    break;
                }
            }
        }
        // The task owns the permit until librdkafka is done with every enqueued message, even if
        // this caller goes away, so the in-flight bound covers what librdkafka really holds.
        let acknowledged = tokio::spawn(await_acks(pending, permit, self.ready.clone()));
        let outcome = match tokio::time::timeout(self.ack_timeout, acknowledged).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join_error)) => Err(BusError::Unavailable(join_error.to_string())),
            Err(_elapsed) => {
                warn!(
                    topic = %self.topic,
                    events = events.len(),
                    timeout_ms = self.ack_timeout.as_millis(),
                    "Kafka did not acknowledge in time"
                );
                self.ready.store(false, Ordering::Relaxed);
                Err(BusError::Unavailable(format!(
                    "no acknowledgement within {} ms",
                    self.ack_timeout.as_millis()
                )))
            }
        };
        match enqueue_error {
            Some(error) => Err(error),
            None => outcome,
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Waits for every delivery, then releases their bytes and records whether the broker answered.
async fn await_acks(
    pending: Vec<DeliveryFuture>,
    permit: OwnedSemaphorePermit,
    ready: Arc<AtomicBool>,
) -> Result<(), BusError> {
    let count = pending.len();
    let mut first_failure = None;
    for delivery in pending {
        let failure = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((error, _message))) => error.to_string(),
            Err(_canceled) => "the producer shut down before the acknowledgement".to_owned(),
        };
        first_failure.get_or_insert(failure);
    }
    drop(permit);
    match first_failure {
        None => {
            ready.store(true, Ordering::Relaxed);
            Ok(())
        }
        Some(reason) => {
            warn!(events = count, %reason, "Kafka delivery failed");
            ready.store(false, Ordering::Relaxed);
            Err(BusError::Unavailable(reason))
        }
    }
}

/// Every [`PROBE_INTERVAL`], fetches the topic's metadata (a blocking call, on the blocking pool)
/// and records whether the broker answered within [`PROBE_TIMEOUT`].
async fn probe_broker(producer: FutureProducer, topic: String, ready: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let probe_producer = producer.clone();
        let probe_topic = topic.clone();
        let answered = tokio::task::spawn_blocking(move || {
            probe_producer
                .client()
                .fetch_metadata(Some(&probe_topic), PROBE_TIMEOUT)
        })
        .await;
        let reachable = matches!(answered, Ok(Ok(_)));
        let was_ready = ready.swap(reachable, Ordering::Relaxed);
        if was_ready != reachable {
            match answered {
                Ok(Err(error)) => warn!(topic, %error, "Kafka broker probe failed"),
                _ => debug!(topic, reachable, "Kafka broker probe"),
            }
        }
    }
}

/// Where and as whom the worker consumes.
#[derive(Debug, Clone)]
pub struct KafkaConsumerConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The events topic.
    pub topic: String,
    /// The consumer group; its committed offsets say where a restarted worker resumes.
    pub group: String,
}

/// One message read from the events topic, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A well-formed envelope.
    Event {
        partition: i32,
        offset: i64,
        project: String,
        event: Event,
    },
    /// A message that is not an [`Envelope`]: to be set aside (see [`DeadLetters`]), not retried.
    Poison {
        partition: i32,
        offset: i64,
        payload: Vec<u8>,
        reason: String,
    },
}

impl Delivery {
    /// Decodes the payload of the message at `partition`/`offset`.
    pub fn decode(partition: i32, offset: i64, payload: Option<&[u8]>) -> Self {
        let Some(bytes) = payload else {
            return Self::Poison {
                partition,
                offset,
                payload: Vec::new(),
                reason: "the message has no payload".to_owned(),
            };
        };
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(Envelope { project, event }) => Self::Event {
                partition,
                offset,
                project,
                event,
            },
            Err(error) => Self::Poison {
                partition,
                offset,
                payload: bytes.to_vec(),
                reason: format!("not an event envelope: {error}"),
            },
        }
    }

    /// The partition the message was read from.
    pub fn partition(&self) -> i32 {
        match self {
            Self::Event { partition, .. } | Self::Poison { partition, .. } => *partition,
        }
    }

    /// The message's offset in its partition.
    pub fn offset(&self) -> i64 {
        match self {
            Self::Event { offset, .. } | Self::Poison { offset, .. } => *offset,
        }
    }
}

/// The offsets to commit after `deliveries` are done: per partition, one past the highest offset.
pub fn next_offsets(deliveries: &[Delivery]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for delivery in deliveries {
        let after = delivery.offset() + 1;
        next.entry(delivery.partition())
            .and_modify(|offset: &mut i64| *offset = (*offset).max(after))
            .or_insert(after);
    }
    next
}

/// The worker's side of the events topic: a consumer-group member that commits only when told.
/// Its methods block; call them from a dedicated thread or `spawn_blocking`.
pub struct KafkaEventSource {
    consumer: BaseConsumer,
    topic: String,
}

impl std::fmt::Debug for KafkaEventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEventSource")
            .field("topic", &self.topic)
            .finish()
    }
}

impl KafkaEventSource {
    /// Joins `config.group` on `config.topic`. A group without committed offsets starts at the
    /// earliest message; nothing is committed automatically.
    pub fn subscribe(config: &KafkaConsumerConfig) -> Result<Self, BusError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A worker that dies without leaving the group (SIGKILL, a lost machine) keeps its
            // partitions until its session expires; 10 s bounds how long they stand still.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Keep the local queue full: the worker takes whole batches, not single messages.
            .set("fetch.wait.max.ms", "50")
            .set("queued.min.messages", "200000")
            .create()?;
        consumer.subscribe(&[&config.topic])?;
        Ok(Self {
            consumer,
            topic: config.topic.clone(),
        })
    }

    /// Waits up to `wait` for a first message, then takes whatever else is already fetched, up
    /// to `max` in all. An empty batch means nothing arrived in time.
    pub fn poll_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut batch = Vec::new();
        let mut timeout = wait;
        while batch.len() < max {
            let Some(received) = self.consumer.poll(timeout) else {
                break;
            };
            let message = received?;
            batch.push(Delivery::decode(
                message.partition(),
                message.offset(),
                message.payload(),
            ));
            timeout = Duration::ZERO;
        }
        Ok(batch)
    }

    /// Commits, synchronously, that every message up to the highest offset of `deliveries` in
    /// each of their partitions is done. The caller guarantees those messages are processed:
    /// the group resumes after them.
    pub fn commit(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let next = next_offsets(deliveries);
        if next.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &offset) in &next {
            offsets.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&offsets, CommitMode::Sync)?;
        debug!(topic = %self.topic, partitions = next.len(), "committed offsets");
        Ok(())
    }
}

/// Producer for `"{topic}.dead-letters"`: messages of the events topic that cannot be processed,
/// kept as sent with the reason in the [`REASON_HEADER`] header.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    ack_timeout: Duration,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish()
    }
}

impl DeadLetters {
    /// Creates the dead-letter topic of `config.topic` (one partition) if needed, and a producer
    /// for it with the same acknowledgement rules as [`KafkaSink`].
    pub async fn connect(config: &KafkaConfig) -> Result<Self, BusError> {
        let topic = Self::topic_for(&config.topic);
        ensure_topic(&config.brokers, &topic, 1).await?;
        Ok(Self {
            producer: reliable_producer(&config.brokers)?,
            topic,
            ack_timeout: config.ack_timeout,
        })
    }

    /// The dead-letter topic of `events_topic`.
    pub fn topic_for(events_topic: &str) -> String {
        format!("{events_topic}.dead-letters")
    }

    /// Sets aside `payload`, read at `partition`/`offset` of the events topic, because of
    /// `reason`. Returns once the dead letter is acknowledged by all in-sync replicas, or fails
    /// with [`BusError::Unavailable`] after the configured `ack_timeout`.
    pub async fn send(
        &self,
        payload: &[u8],
        reason: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), BusError> {
        let partition_text = partition.to_string();
        let offset_text = offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(reason),
            })
            .insert(Header {
                key: "scribble-source-partition",
                value: Some(&partition_text),
            })
            .insert(Header {
                key: "scribble-source-offset",
                value: Some(&offset_text),
            });
        let key = format!("{partition}/{offset}");
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(payload)
            .headers(headers);
        let sent = self.producer.send(record, Duration::ZERO);
        let Ok(delivered) = tokio::time::timeout(self.ack_timeout, sent).await else {
            return Err(BusError::Unavailable(format!(
                "no acknowledgement of the dead letter within {} ms",
                self.ack_timeout.as_millis()
            )));
        };
        delivered
            .map(|_| ())
            .map_err(|(error, _)| BusError::Unavailable(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use scribble_domain::event::{Body, Who};
    use uuid::Uuid;

    use super::*;

    fn event(anonymous_id: Option<&str>, user_id: Option<&str>) -> Event {
        Event {
            event_id: Uuid::new_v4(),
            at_ms: 1_700_000_000_000,
            received_ms: 1_700_000_000_001,
            who: Who {
                anonymous_id: anonymous_id.map(str::to_owned),
                user_id: user_id.map(str::to_owned),
            },
            body: Body::Alias {
                previous_id: "old".into(),
            },
        }
    }

    #[test]
    fn key_routes_by_anonymous_id_first_then_user_id() {
        assert_eq!(
            message_key("shop", &event(Some("a1"), Some("u1"))),
            "shop/a1"
        );
        assert_eq!(message_key("shop", &event(None, Some("u1"))), "shop/u1");
        assert_eq!(message_key("shop", &event(None, None)), "shop/");
    }

    #[test]
    fn envelope_decodes_to_event_delivery() {
        let sent = event(Some("a1"), None);
        let payload = serde_json::to_vec(&OutgoingEnvelope {
            project: "shop",
            event: &sent,
        })
        .unwrap();
        assert_eq!(
            Delivery::decode(2, 7, Some(&payload)),
            Delivery::Event {
                partition: 2,
                offset: 7,
                project: "shop".into(),
                event: sent,
            }
        );
    }

    #[test]
    fn garbage_and_empty_messages_are_poison() {
        let Delivery::Poison {
            payload, reason, ..
        } = Delivery::decode(0, 1, Some(b"not json"))
        else {
            panic!("garbage decoded as an event");
        };
        assert_eq!(payload, b"not json");
        assert!(reason.contains("not an event envelope"), "{reason}");
        assert!(matches!(
            Delivery::decode(0, 2, None),
            Delivery::Poison { offset: 2, .. }
        ));
    }

    #[test]
    fn next_offsets_are_one_past_the_highest_per_partition() {
        let poison = |partition, offset| Delivery::Poison {
            partition,
            offset,
            payload: Vec::new(),
            reason: String::new(),
        };
        let deliveries = [poison(0, 4), poison(1, 9), poison(0, 2), poison(0, 6)];
        assert_eq!(next_offsets(&deliveries), BTreeMap::from([(0, 7), (1, 10)]));
        assert!(next_offsets(&[]).is_empty());
    }
}

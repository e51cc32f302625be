//! The event bus on Kafka, for the scale-out deployment: [`KafkaSink`] is the collector's
//! [`EventSink`], [`KafkaEventSource`] is what the stream worker reads, and [`DeadLetters`] keeps
//! messages the worker cannot decode.
//!
//! Each message is one [`Envelope`] as JSON: the events of one request that share a partition,
//! in the order they were accepted. Packing them matters because a broker's cost is mostly per
//! message, not per byte: tansu, for one, writes every record with its own SQL insert, so one
//! message per event capped the collector at about 45,000 events/s on two cores however
//! librdkafka was tuned, while the same events packed per partition go several times faster.
//! Messages of the earlier format (one event each, `{"project", "event"}`) still decode.
//!
//! rdkafka's types stay in this module: the consumer hands out [`Delivery`] values and every
//! failure becomes a [`BusError`], so callers never see a raw Kafka message.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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

use crate::{BusError, EventSink, InFlight};

/// How long librdkafka keeps trying to deliver a message (`message.timeout.ms`), well past the
/// time callers wait for it. A message that times out after it was sent makes an idempotent
/// producer bump its epoch, which some Kafka-API brokers (tansu 0.6) cannot handle; a long
/// delivery timeout avoids that during short outages, and the bytes such messages hold stay
/// counted against [`KafkaConfig::max_in_flight_bytes`] until librdkafka lets go of them.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `append` waits for room under the in-flight bound before answering `Busy`.
const BUSY_WAIT: Duration = Duration::from_millis(100);
/// Most payload bytes in one message. Well under librdkafka's and Kafka's default limit of about
/// 1 MB, and far over one event (at most 32 KiB), so a message always has room for one.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
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

/// One message on the events topic: events of one project that all belong on the message's
/// partition (see [`message_key`]), in the order the collector accepted them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub project: String,
    pub events: Vec<Event>,
}

/// A message of the earlier format, one event each, which a topic may still hold after an
/// upgrade.
#[derive(Deserialize)]
struct SingleEventEnvelope {
    project: String,
    event: Event,
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
        // A millisecond lets concurrent requests share one produce request; longer only adds
        // latency (against tansu, 32 concurrent appends: 5 ms gave about a third fewer events/s).
        .set("linger.ms", "1")
        // One produce request at a time per broker. A broker answers one connection's requests
        // in order anyway, and while more wait for it librdkafka's broker thread busy-polls:
        // with the default of 5 it burnt half a core of the collector's two. With one, what
        // arrives meanwhile gathers into the next request. Ordering and idempotence stay as
        // they were (idempotence allows up to 5).
        .set("max.in.flight.requests.per.connection", "1")
        // librdkafka's default, set so that it cannot drift from `partition_for`: keyed
        // messages (see `Route::Key`) and the collector's own choice must agree.
        .set("partitioner", "consistent_random")
        .create()?)
}

/// The partitioning key of `event`: `"{project}/{routing id}"`, where the routing id is the
/// anonymous id if the event has one, else the user id (empty if it has neither). An event goes
/// to the partition librdkafka's default partitioner gives this key ([`partition_for`]).
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

/// The partition of `key` among `partitions`, as librdkafka's `consistent_random` partitioner
/// computes it for a non-empty key: CRC-32 modulo the count. Collectors that produce keyed
/// messages (an older version, or this one before it knows the partition count) therefore put
/// a visitor on the same partition as packed messages do.
fn partition_for(key: &str, partitions: NonZeroU32) -> i32 {
    let partition = crc32fast::hash(key.as_bytes()) % partitions.get();
    i32::try_from(partition).expect("Kafka partition numbers are i32")
}

/// Where a message goes: a partition chosen by the collector, or a key for librdkafka to route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Route {
    Partition(i32),
    /// Used while the topic's partition count is not known yet: one message per key, which is
    /// correct whatever the count.
    Key(String),
}

/// One message ready to produce.
#[derive(Debug)]
struct Outgoing {
    route: Route,
    /// An [`Envelope`] as JSON.
    payload: Vec<u8>,
}

/// Packs `events` of `project` into as few messages as ordering allows: one per partition (or
/// per key, when `partitions` is unknown), each at most `max_bytes` unless a single event is
/// larger. Messages of one route come out in event order, so librdkafka, which keeps the order
/// of each partition, writes every visitor's events in the order they were accepted.
fn pack(
    project: &str,
    events: &[Event],
    partitions: Option<NonZeroU32>,
    max_bytes: usize,
) -> Vec<Outgoing> {
    // Events are serialized one by one and spliced between this head and `TAIL`, so a full
    // message is known before the event that would overflow it is added.
    const TAIL: &[u8] = b"]}";
    let mut head = br#"{"project":"#.to_vec();
    serde_json::to_writer(&mut head, project).expect("a string always serializes");
    head.extend_from_slice(br#","events":["#);

    let mut packed = Vec::new();
    let mut open: Vec<Outgoing> = Vec::new();
    let mut open_by_route: HashMap<Route, usize> = HashMap::new();
    let mut event_json = Vec::new();
    for event in events {
        let key = message_key(project, event);
        let route = match partitions {
            Some(count) => Route::Partition(partition_for(&key, count)),
            None => Route::Key(key),
        };
        event_json.clear();
        serde_json::to_writer(&mut event_json, event)
            .expect("an event always serializes to JSON: its maps have string keys");
        let slot = *open_by_route.entry(route).or_insert_with_key(|route| {
            open.push(Outgoing {
                route: route.clone(),
                payload: head.clone(),
            });
            open.len() - 1
        });
        let message = &mut open[slot];
        let has_events = message.payload.len() > head.len();
        if has_events && message.payload.len() + 1 + event_json.len() + TAIL.len() > max_bytes {
            let full = std::mem::replace(&mut message.payload, head.clone());
            packed.push(Outgoing {
                route: message.route.clone(),
                payload: [full.as_slice(), TAIL].concat(),
            });
        } else if has_events {
            message.payload.push(b',');
        }
        message.payload.extend_from_slice(&event_json);
    }
    // Each route's last message goes after its full ones, keeping the route's order.
    packed.extend(open.into_iter().map(|mut message| {
        message.payload.extend_from_slice(TAIL);
        message
    }));
    packed
}

/// What the background probe last learned about the broker, shared by a sink and its appends.
#[derive(Debug, Default)]
struct BrokerView {
    /// Whether the broker answered the last probe or acknowledged the last delivery.
    ready: AtomicBool,
    /// The topic's partition count from the last metadata answer; 0 until one arrived.
    partitions: AtomicU32,
}

impl BrokerView {
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn set_ready(&self, ready: bool) -> bool {
        self.ready.swap(ready, Ordering::Relaxed)
    }

    fn partitions(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.partitions.load(Ordering::Relaxed))
    }
}

/// The collector's [`EventSink`] on Kafka. Must be created inside a Tokio runtime: it starts a
/// background task that probes the broker every 2 s for [`EventSink::is_ready`] and the topic's
/// partition count, stopped when the sink is dropped.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    ack_timeout: Duration,
    in_flight: Arc<Semaphore>,
    max_in_flight_bytes: usize,
    broker: Arc<BrokerView>,
    probe: JoinHandle<()>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("broker", &self.broker)
            .field("free_bytes", &self.in_flight.available_permits())
            .finish()
    }
}

impl KafkaSink {
    /// The topic's partition count, once a probe learned it. Until then the sink sends one
    /// message per key and leaves the partition to librdkafka.
    pub fn known_partitions(&self) -> Option<u32> {
        self.broker.partitions().map(NonZeroU32::get)
    }

    /// A sink producing to `config.topic`. Connecting happens in the background: the sink is not
    /// ready until the first probe or delivery succeeds.
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let producer = reliable_producer(&config.brokers)?;
        let broker = Arc::new(BrokerView::default());
        let probe = tokio::spawn(probe_broker(
            producer.clone(),
            config.topic.clone(),
            broker.clone(),
        ));
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            ack_timeout: config.ack_timeout,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight_bytes)),
            max_in_flight_bytes: config.max_in_flight_bytes,
            broker,
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
    /// Sends every event at once, packed into as few messages as their partitions allow, and
    /// returns `Ok` only after each message is acknowledged by all in-sync replicas. A failed or
    /// late acknowledgement of any of them fails the whole call ([`BusError::Unavailable`]); the
    /// sender retries, and the worker drops duplicates by id.
    async fn append(&self, project: &str, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let messages = pack(project, events, self.broker.partitions(), MAX_MESSAGE_BYTES);
        let bytes = messages.iter().map(|message| message.payload.len()).sum();
        let permit = self.reserve(bytes).await?;

        let mut pending = Vec::with_capacity(messages.len());
        let mut enqueue_error = None;
        for Outgoing { route, payload } in &messages {
            let record = FutureRecord::<str, [u8]>::to(&self.topic).payload(payload);
            let record = match route {
                Route::Partition(partition) => record.partition(*partition),
                Route::Key(key) => record.key(key.as_str()),
            };
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
        let acknowledged = tokio::spawn(await_acks(pending, permit, self.broker.clone()));
        let outcome = match tokio::time::timeout(self.ack_timeout, acknowledged).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join_error)) => Err(BusError::Unavailable(join_error.to_string())),
            Err(_elapsed) => {
                warn!(
                    topic = %self.topic,
                    events = events.len(),
                    messages = messages.len(),
                    timeout_ms = self.ack_timeout.as_millis(),
                    "Kafka did not acknowledge in time"
                );
                self.broker.set_ready(false);
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
        self.broker.is_ready()
    }

    /// librdkafka's count of messages and requests not yet acknowledged, and the payload bytes
    /// counted against [`KafkaConfig::max_in_flight_bytes`].
    fn in_flight(&self) -> Option<InFlight> {
        let free = self.in_flight.available_permits();
        Some(InFlight {
            messages: u64::try_from(self.producer.in_flight_count()).unwrap_or(0),
            bytes: (self.max_in_flight_bytes.saturating_sub(free)) as u64,
        })
    }
}

/// Waits for every delivery, then releases their bytes and records whether the broker answered.
async fn await_acks(
    pending: Vec<DeliveryFuture>,
    permit: OwnedSemaphorePermit,
    broker: Arc<BrokerView>,
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
            broker.set_ready(true);
            Ok(())
        }
        Some(reason) => {
            warn!(messages = count, %reason, "Kafka delivery failed");
            broker.set_ready(false);
            Err(BusError::Unavailable(reason))
        }
    }
}

/// Every [`PROBE_INTERVAL`], fetches the topic's metadata (a blocking call, on the blocking pool)
/// and records whether the broker answered within [`PROBE_TIMEOUT`], and with how many
/// partitions. A topic the broker does not know (yet) leaves the count as it was.
async fn probe_broker(producer: FutureProducer, topic: String, broker: Arc<BrokerView>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let probe_producer = producer.clone();
        let probe_topic = topic.clone();
        let answered = tokio::task::spawn_blocking(move || {
            let metadata = probe_producer
                .client()
                .fetch_metadata(Some(&probe_topic), PROBE_TIMEOUT)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|found| found.name() == probe_topic && found.error().is_none())
                .map_or(0, |found| found.partitions().len());
            Ok::<_, KafkaError>(partitions)
        })
        .await;
        if let Ok(Ok(partitions)) = answered {
            if let Some(count) = u32::try_from(partitions).ok().filter(|&count| count > 0) {
                broker.partitions.store(count, Ordering::Relaxed);
            }
        }
        let reachable = matches!(answered, Ok(Ok(_)));
        let was_ready = broker.set_ready(reachable);
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

/// What the worker gets from the events topic: each event of a message, or a message that
/// cannot be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// One event of a well-formed envelope. The other events of its message share its
    /// partition and offset.
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
    /// Decodes the payload of the message at `partition`/`offset`: one delivery per event it
    /// carries, in order, or a single poison delivery. Both the packed format and the earlier
    /// one-event format are read.
    pub fn decode(partition: i32, offset: i64, payload: Option<&[u8]>) -> Vec<Self> {
        let poison = |payload: &[u8], reason: String| {
            vec![Self::Poison {
                partition,
                offset,
                payload: payload.to_vec(),
                reason,
            }]
        };
        let Some(bytes) = payload else {
            return poison(&[], "the message has no payload".to_owned());
        };
        let Envelope { project, events } = match serde_json::from_slice::<Envelope>(bytes) {
            Ok(envelope) => envelope,
            Err(error) => match serde_json::from_slice::<SingleEventEnvelope>(bytes) {
                Ok(SingleEventEnvelope { project, event }) => Envelope {
                    project,
                    events: vec![event],
                },
                // The packed format's error: it is the one senders should write.
                Err(_) => return poison(bytes, format!("not an event envelope: {error}")),
            },
        };
        if events.is_empty() {
            // Nothing to store, but it must still be set aside, or its offset never commits.
            return poison(bytes, "the envelope carries no events".to_owned());
        }
        events
            .into_iter()
            .map(|event| Self::Event {
                partition,
                offset,
                project: project.clone(),
                event,
            })
            .collect()
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

    /// Waits up to `wait` for a first message, then takes whatever else is already fetched,
    /// until the batch holds `max` deliveries or more: the events of one message always come in
    /// the same batch, so the offsets committed after a batch ([`Self::commit`]) never cover a
    /// message only partly processed. An empty batch means nothing arrived in time.
    pub fn poll_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut batch = Vec::new();
        let mut timeout = wait;
        while batch.len() < max {
            let Some(received) = self.consumer.poll(timeout) else {
                break;
            };
            let message = received?;
            batch.extend(Delivery::decode(
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

    /// The consumer lag of this member: over the partitions assigned to it, how many messages
    /// the group has not committed (per partition, the high watermark minus the committed
    /// offset). No partitions and no lag before the group assigned any, or with more members
    /// than partitions, so the lags of every member add up to the group's. Asks the group
    /// coordinator and the partition leaders, waiting at most `timeout` for each answer.
    pub fn lag(&self, timeout: Duration) -> Result<ConsumerLag, BusError> {
        let committed = self.consumer.committed(timeout)?;
        let mut partitions = Vec::with_capacity(committed.count());
        for element in committed.elements() {
            let (low, high) =
                self.consumer
                    .fetch_watermarks(element.topic(), element.partition(), timeout)?;
            partitions.push(PartitionProgress {
                committed: match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                },
                low,
                high,
            });
        }
        Ok(ConsumerLag {
            partitions: partitions.len(),
            messages: uncommitted_messages(&partitions),
        })
    }
}

/// A consumer's share of its group's lag ([`KafkaEventSource::lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Partitions assigned to the consumer.
    pub partitions: usize,
    /// Messages of those partitions the group has not committed.
    pub messages: u64,
}

/// Where a consumer group stands in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartitionProgress {
    /// The next offset the group will read, once it committed one.
    committed: Option<i64>,
    /// The partition's first offset still kept (its low watermark).
    low: i64,
    /// One past its last offset (its high watermark).
    high: i64,
}

/// The messages of `partitions` the group has not committed: each partition's high watermark
/// minus where the group resumes, which is the committed offset, or the first offset still
/// kept when nothing is committed or the committed messages were already deleted.
fn uncommitted_messages(partitions: &[PartitionProgress]) -> u64 {
    partitions
        .iter()
        .map(|partition| {
            let resume_at = partition
                .committed
                .unwrap_or(partition.low)
                .max(partition.low);
            u64::try_from(partition.high - resume_at).unwrap_or(0)
        })
        .sum()
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
            ip: None,
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

    fn visitor(anonymous_id: &str) -> Event {
        event(Some(anonymous_id), None)
    }

    /// The envelopes of `messages`, decoded as the worker decodes them.
    fn unpacked(messages: &[Outgoing]) -> Vec<(Route, Vec<Event>)> {
        messages
            .iter()
            .map(|message| {
                let envelope: Envelope = serde_json::from_slice(&message.payload).unwrap();
                assert_eq!(envelope.project, "shop");
                (message.route.clone(), envelope.events)
            })
            .collect()
    }

    #[test]
    fn partitions_are_librdkafkas_crc32_of_the_key() {
        // CRC-32 of "123456789" is 0xCBF43926, the algorithm's check value.
        let four = NonZeroU32::new(4).unwrap();
        assert_eq!(
            partition_for("123456789", four),
            (0xCBF4_3926_u32 % 4) as i32
        );
        assert_eq!(partition_for("123456789", NonZeroU32::MIN), 0);
    }

    #[test]
    fn events_are_packed_one_message_per_partition_in_order() {
        let events: Vec<Event> = ["a", "b", "c", "a", "d", "b", "a"]
            .iter()
            .map(|id| visitor(id))
            .collect();
        let partitions = NonZeroU32::new(2);
        let messages = pack("shop", &events, partitions, MAX_MESSAGE_BYTES);
        let unpacked = unpacked(&messages);
        assert!(unpacked.len() <= 2, "{unpacked:?}");
        let mut seen = Vec::new();
        for (route, carried) in &unpacked {
            for event in carried {
                let key = message_key("shop", event);
                assert_eq!(
                    *route,
                    Route::Partition(partition_for(&key, partitions.unwrap())),
                    "each event travels on its key's partition"
                );
                seen.push(event.clone());
            }
        }
        for id in ["a", "b", "c", "d"] {
            let sent: Vec<&Event> = events.iter().filter(|e| e.who == visitor(id).who).collect();
            let received: Vec<&Event> = seen.iter().filter(|e| e.who == visitor(id).who).collect();
            assert_eq!(received, sent, "visitor {id} keeps its order");
        }
        assert_eq!(seen.len(), events.len());
    }

    #[test]
    fn without_a_partition_count_each_key_gets_its_own_keyed_message() {
        let events = [visitor("a"), visitor("b"), visitor("a")];
        let unpacked = unpacked(&pack("shop", &events, None, MAX_MESSAGE_BYTES));
        assert_eq!(
            unpacked,
            vec![
                (
                    Route::Key("shop/a".into()),
                    vec![events[0].clone(), events[2].clone()]
                ),
                (Route::Key("shop/b".into()), vec![events[1].clone()]),
            ]
        );
    }

    #[test]
    fn full_messages_are_split_in_order_and_an_oversized_event_goes_alone() {
        let events: Vec<Event> = (0..10).map(|_| visitor("a")).collect();
        let one = serde_json::to_vec(&events[0]).unwrap().len();
        let limit = 3 * (one + 1) + 40;
        let messages = pack("shop", &events, NonZeroU32::new(1), limit);
        assert!(messages
            .iter()
            .all(|message| message.payload.len() <= limit));
        let sizes: Vec<usize> = unpacked(&messages).iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        let flattened: Vec<Event> = unpacked(&messages)
            .into_iter()
            .flat_map(|(_, e)| e)
            .collect();
        assert_eq!(flattened, events);

        let alone = pack("shop", &events[..2], NonZeroU32::new(1), 10);
        assert_eq!(
            unpacked(&alone).len(),
            2,
            "one event per message, never none"
        );
    }

    #[test]
    fn packed_messages_decode_to_one_delivery_per_event() {
        let events = [visitor("a"), visitor("a")];
        let messages = pack("shop", &events, NonZeroU32::new(1), MAX_MESSAGE_BYTES);
        assert_eq!(messages.len(), 1);
        let deliveries = Delivery::decode(2, 7, Some(&messages[0].payload));
        let expected: Vec<Delivery> = events
            .iter()
            .map(|event| Delivery::Event {
                partition: 2,
                offset: 7,
                project: "shop".into(),
                event: event.clone(),
            })
            .collect();
        assert_eq!(deliveries, expected);
    }

    #[test]
    fn single_event_messages_of_the_earlier_format_still_decode() {
        let sent = visitor("a");
        let payload =
            serde_json::to_vec(&serde_json::json!({"project": "shop", "event": sent})).unwrap();
        assert_eq!(
            Delivery::decode(2, 7, Some(&payload)),
            vec![Delivery::Event {
                partition: 2,
                offset: 7,
                project: "shop".into(),
                event: sent,
            }]
        );
    }

    #[test]
    fn garbage_and_empty_messages_are_poison() {
        let garbage = Delivery::decode(0, 1, Some(b"not json"));
        let [Delivery::Poison {
            payload, reason, ..
        }] = garbage.as_slice()
        else {
            panic!("garbage decoded as an event");
        };
        assert_eq!(payload, b"not json");
        assert!(reason.contains("not an event envelope"), "{reason}");
        assert!(matches!(
            Delivery::decode(0, 2, None).as_slice(),
            [Delivery::Poison { offset: 2, .. }]
        ));
        let no_events = br#"{"project": "shop", "events": []}"#;
        assert!(matches!(
            Delivery::decode(0, 3, Some(no_events)).as_slice(),
            [Delivery::Poison { offset: 3, reason, .. }] if reason.contains("no events")
        ));
    }

    #[test]
    fn lag_counts_from_the_commit_or_the_first_kept_offset() {
        let progress = |committed, low, high| PartitionProgress {
            committed,
            low,
            high,
        };
        assert_eq!(uncommitted_messages(&[]), 0);
        assert_eq!(
            uncommitted_messages(&[
                progress(Some(7), 0, 10),
                progress(None, 4, 9),
                progress(Some(2), 5, 6),
                progress(Some(12), 0, 12),
            ]),
            3 + 5 + 1,
            "committed, nothing committed, committed messages deleted, caught up"
        );
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

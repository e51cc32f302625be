//! The ClickHouse store against a real server: migrations, and the promise that it answers
//! exactly as the embedded store does over the same events, replays and late identifies
//! included.
//!
//! Needs `SCRIBBLE_TEST_CLICKHOUSE_URL` (for example from
//! `eval "$(scripts/test-servers start DIR)"`). Each test works in a database of its own with a
//! random name and drops it at the end, also when the test fails ([`TestDatabase`]).

use std::collections::HashSet;
use std::sync::Arc;

use scribble_domain::demo::{generate, DemoOptions};
use scribble_domain::event::{Body, Event, IdentityKey, Who};
use scribble_domain::journey::JourneySet;
use scribble_domain::paths::{Breakdown, GraphView, PathOptions};
use scribble_domain::stitch::JourneyFilter;
use scribble_store::testing::TestDatabase;
use scribble_store::{ClickHouseConfig, ClickHouseStore, EmbeddedStore, JourneyStore};
use serde_json::Map;
use uuid::Uuid;

const DAY_MS: i64 = 24 * 3600 * 1000;
const SHOP: &str = "shop";

fn demo(customers: usize, seed: u64) -> Vec<Event> {
    generate(&DemoOptions {
        customers,
        seed,
        ..DemoOptions::default()
    })
}

fn pairs<'a>(project: &'a str, events: &'a [Event]) -> Vec<(&'a str, &'a Event)> {
    events.iter().map(|event| (project, event)).collect()
}

fn embedded(events: &[(&str, &Event)]) -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.db")).unwrap();
    store.apply(events, 1).unwrap();
    (dir, Arc::new(store))
}

/// Journeys in customer order as `(touchpoint, channel, at_ms)` names, so that sets built with
/// different symbol tables compare.
fn named(set: &JourneySet) -> Vec<Vec<(String, String, i64)>> {
    set.journeys
        .iter()
        .map(|journey| {
            journey
                .steps
                .iter()
                .map(|step| {
                    (
                        set.symbols.name(step.touchpoint).to_owned(),
                        set.symbols.name(step.channel).to_owned(),
                        step.at_ms,
                    )
                })
                .collect()
        })
        .collect()
}

/// The filters every comparison runs: none, a time range, a property and a trait.
fn filters() -> Vec<(&'static str, JourneyFilter)> {
    let start = DemoOptions::default().start_ms;
    vec![
        ("no filter", JourneyFilter::default()),
        (
            "days 10 to 30",
            JourneyFilter {
                from_ms: Some(start + 10 * DAY_MS),
                to_ms: Some(start + 30 * DAY_MS),
                ..JourneyFilter::default()
            },
        ),
        (
            "from day 45",
            JourneyFilter {
                from_ms: Some(start + 45 * DAY_MS),
                ..JourneyFilter::default()
            },
        ),
        (
            "email traffic",
            JourneyFilter {
                properties: vec![("utm_medium".into(), "email".into())],
                ..JourneyFilter::default()
            },
        ),
        (
            "researchers before day 20",
            JourneyFilter {
                to_ms: Some(start + 20 * DAY_MS),
                traits: vec![("persona".into(), "researcher".into())],
                ..JourneyFilter::default()
            },
        ),
    ]
}

/// Identities worth asking `customer` about: the anonymous and user ids of identifies, CRM ids
/// joined by aliases, an anonymous visitor, and one nobody has.
fn identities(events: &[Event]) -> Vec<IdentityKey> {
    let mut keys = vec![IdentityKey::user("nobody-at-all")];
    for event in events {
        match &event.body {
            Body::Identify { .. } if keys.len() < 8 => keys.extend(event.identities()),
            Body::Alias { previous_id } if keys.len() < 12 => {
                keys.push(IdentityKey::user(previous_id));
            }
            Body::Touchpoint { .. } if keys.len() < 14 && event.who.user_id.is_none() => {
                keys.extend(event.identities());
            }
            _ => {}
        }
    }
    keys
}

/// Path options that take each way through the ClickHouse path query: the journey's first
/// steps (the default, with and without drop-offs), collapsed repeats, each kind of anchor, a
/// channel breakdown, and top N hiding some labels or all.
fn path_options() -> Vec<PathOptions> {
    let default = PathOptions::default();
    vec![
        default.clone(),
        PathOptions {
            max_steps: 2,
            drop_offs: false,
            ..default.clone()
        },
        PathOptions {
            collapse_repeats: true,
            top_n: Some(2),
            ..default.clone()
        },
        PathOptions {
            start: Some("site_visit".into()),
            max_steps: 3,
            ..default.clone()
        },
        PathOptions {
            end: Some("purchase".into()),
            top_n: Some(1),
            ..default.clone()
        },
        PathOptions {
            start: Some("site_visit".into()),
            end: Some("purchase".into()),
            collapse_repeats: true,
            ..default.clone()
        },
        PathOptions {
            breakdown: Breakdown::Channel,
            max_steps: 3,
            ..default.clone()
        },
        // A top of none: every label is "other".
        PathOptions {
            top_n: Some(0),
            ..default
        },
    ]
}

/// Asserts that both stores give the same journeys and path graphs (under every filter in
/// [`filters`]) and the same customers for `project`.
async fn assert_same_answers(
    clickhouse: &ClickHouseStore,
    embedded: &Arc<EmbeddedStore>,
    project: &str,
    events: &[Event],
) {
    for (name, filter) in filters() {
        let expected = embedded.journeys(project, &filter).await.unwrap();
        let actual = clickhouse.journeys(project, &filter).await.unwrap();
        assert_eq!(actual.event_count(), expected.event_count(), "{name}");
        assert_eq!(named(&actual), named(&expected), "{name}");
        let compact = clickhouse
            .journeys_without_properties(project, &filter)
            .await
            .unwrap();
        assert_eq!(
            named(&compact),
            named(&expected),
            "{name}, without properties"
        );
        for view in [GraphView::State, GraphView::Positional] {
            for options in &path_options() {
                let expected = embedded.path_graph(project, &filter, view, options).await;
                let actual = clickhouse.path_graph(project, &filter, view, options).await;
                assert_eq!(
                    actual.unwrap(),
                    expected.unwrap(),
                    "{name} {view:?} {options:?}"
                );
            }
        }
    }
    for identity in identities(events) {
        let expected = embedded.customer(project, &identity).await.unwrap();
        let actual = clickhouse.customer(project, &identity).await.unwrap();
        assert_eq!(actual, expected, "customer {identity:?}");
    }
}

#[tokio::test]
async fn migrations_apply_once_and_are_idempotent() {
    let database = TestDatabase::new().await;
    assert_eq!(database.store.migrate().await.unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(database.store.migrate().await.unwrap(), Vec::<u32>::new());
    assert_eq!(database.count("schema_migrations").await, 4);
    let tables: Vec<String> = database
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(database.name.as_str())
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        tables,
        [
            "events",
            "identity_links",
            "identity_overrides",
            "journey_fragments",
            "schema_migrations",
            "tombstones",
            "touchpoint_labels",
            "traits"
        ]
    );
    // A second process starting on a migrated database finds nothing to do.
    let other = ClickHouseStore::connect(&ClickHouseConfig {
        url: database.url.clone(),
        database: database.name.clone(),
    })
    .await
    .unwrap();
    assert_eq!(other.migrate().await.unwrap(), Vec::<u32>::new());
}

#[tokio::test]
async fn journeys_and_customers_match_the_embedded_store() {
    let database = TestDatabase::migrated().await;
    let shop = demo(300, 7);
    let blog = demo(20, 8);
    let mut batch = pairs(SHOP, &shop);
    batch.extend(pairs("blog", &blog));
    database.store.insert(&batch).await.unwrap();
    assert_eq!(database.count("events").await, batch.len() as u64);

    let (_dir, embedded) = embedded(&batch);
    for (name, filter) in filters() {
        let journeys = embedded.journeys(SHOP, &filter).await.unwrap();
        assert!(
            !journeys.journeys.is_empty(),
            "{name}: the filter selects nobody"
        );
    }
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
    assert_same_answers(&database.store, &embedded, "blog", &blog).await;
    let nobody = database
        .store
        .journeys("no-such-project", &JourneyFilter::default())
        .await
        .unwrap();
    assert!(nobody.journeys.is_empty());
}

#[tokio::test]
async fn a_replayed_batch_changes_no_answer() {
    let database = TestDatabase::migrated().await;
    let shop = demo(300, 7);
    let batch = pairs(SHOP, &shop);
    let (_dir, embedded) = embedded(&batch);
    database.store.insert(&batch).await.unwrap();
    let labels = database.count("touchpoint_labels").await;
    // The replay, as after a worker crash between the write and its commit.
    database.store.insert(&batch).await.unwrap();
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
    let visitors: HashSet<String> = shop
        .iter()
        .filter(|event| matches!(event.body, Body::Touchpoint { .. }))
        .map(|event| {
            event
                .who
                .anonymous_id
                .clone()
                .or(event.who.user_id.clone())
                .unwrap()
        })
        .collect();
    // Before any merge: the replay wrote no fragment and no label row.
    assert_eq!(
        database.count("journey_fragments").await,
        visitors.len() as u64
    );
    assert_eq!(database.count("touchpoint_labels").await, labels);

    // Duplicates share the sorting key, so a merge keeps one row of each event; a replay wrote
    // no fragment, so each visitor still has one.
    for table in ["events", "journey_fragments"] {
        database
            .client()
            .query(&format!("OPTIMIZE TABLE {}.{table} FINAL", database.name))
            .execute()
            .await
            .unwrap();
    }
    assert_eq!(database.count("events").await, shop.len() as u64);
    assert_eq!(
        database.count("journey_fragments").await,
        visitors.len() as u64
    );
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
}

#[tokio::test]
async fn upgrading_fills_fragments_from_the_stored_events() {
    let database = TestDatabase::migrated().await;
    let shop = demo(300, 7);
    let batch = pairs(SHOP, &shop);
    let (_dir, embedded) = embedded(&batch);
    database.store.insert(&batch).await.unwrap();
    // Back to a database of schema version 2, as written before fragments existed (its events
    // keep the address column of version 4, which migrating again must not trip over).
    for statement in [
        "DROP TABLE {db}.journey_fragments",
        "DROP TABLE {db}.touchpoint_labels",
        "DROP TABLE {db}.tombstones",
        "DROP TABLE {db}.schema_migrations",
    ] {
        let statement = statement.replace("{db}", &database.name);
        database.client().query(&statement).execute().await.unwrap();
    }
    assert_eq!(database.store.migrate().await.unwrap(), vec![1, 2, 3, 4]);
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
}

#[tokio::test]
async fn identifies_in_a_later_batch_stitch_earlier_touchpoints() {
    let database = TestDatabase::migrated().await;
    let shop = demo(300, 7);
    // First everything that names one identity only, then everything that joins two: the
    // identifies, the aliases and the touchpoints naming both an anonymous and a user id.
    let (single, links): (Vec<Event>, Vec<Event>) = shop.iter().cloned().partition(|event| {
        matches!(event.body, Body::Touchpoint { .. }) && event.identities().len() == 1
    });
    assert!(!links.is_empty(), "the demo has identifies and aliases");
    database.store.insert(&pairs(SHOP, &single)).await.unwrap();

    let (anonymous, user) = links
        .iter()
        .filter(|event| matches!(event.body, Body::Identify { .. }))
        .find_map(|event| {
            let anonymous = event.who.anonymous_id.as_deref()?;
            let user = event.who.user_id.as_deref()?;
            let visited = single
                .iter()
                .any(|touch| touch.who.anonymous_id.as_deref() == Some(anonymous));
            visited.then(|| (IdentityKey::anonymous(anonymous), IdentityKey::user(user)))
        })
        .expect("the demo has an identified visitor with anonymous touches");
    let before = database
        .store
        .customer(SHOP, &anonymous)
        .await
        .unwrap()
        .expect("the visitor's touches are stored");
    assert_eq!(before.identities, std::slice::from_ref(&anonymous));

    database.store.insert(&pairs(SHOP, &links)).await.unwrap();
    let after = database
        .store
        .customer(SHOP, &anonymous)
        .await
        .unwrap()
        .expect("the visitor is still there");
    assert!(after.identities.contains(&user));
    assert_eq!(
        database.store.customer(SHOP, &user).await.unwrap().as_ref(),
        Some(&after)
    );
    for touch in &before.touches {
        assert!(after.touches.contains(touch), "{touch:?} left the journey");
    }

    let (_dir, embedded) = embedded(&pairs(SHOP, &shop));
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
}

#[tokio::test]
async fn a_touchpoint_outside_the_time_range_still_joins_identities() {
    let database = TestDatabase::migrated().await;
    let touch = |n: u128, at_ms: i64, anonymous: Option<&str>, user: Option<&str>| Event {
        event_id: Uuid::from_u128(n),
        at_ms,
        received_ms: at_ms,
        who: Who {
            anonymous_id: anonymous.map(str::to_owned),
            user_id: user.map(str::to_owned),
        },
        body: Body::Touchpoint {
            touchpoint: "site_visit".into(),
            channel: "web".into(),
            direct: true,
            properties: Map::new(),
        },
        ip: None,
    };
    let events = [
        // The only link between the cookie and the customer, long before the range.
        touch(1, 1_000, Some("cookie"), Some("ann")),
        touch(2, 50_000, Some("cookie"), None),
        touch(3, 60_000, None, Some("ann")),
        touch(4, 70_000, Some("stranger"), None),
    ];
    let batch = pairs(SHOP, &events);
    database.store.insert(&batch).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    let range = JourneyFilter {
        from_ms: Some(10_000),
        to_ms: Some(100_000),
        ..JourneyFilter::default()
    };
    let expected = embedded.journeys(SHOP, &range).await.unwrap();
    assert_eq!(
        expected.journeys.len(),
        2,
        "ann (two touches) and the stranger"
    );
    let actual = database.store.journeys(SHOP, &range).await.unwrap();
    assert_eq!(named(&actual), named(&expected));
}

/// Names and values come from senders and analysts: quotes, backslashes and question marks (the
/// client's bind placeholder) in a project, a property or a trait are data, never SQL.
#[tokio::test]
async fn a_batch_linking_more_identities_than_one_query_can_name_is_stored() {
    let database = TestDatabase::migrated().await;
    // 6,000 customers, each an identify joining two 40-character ids: the identity lookups
    // would name over 500 KB, twice the server's default query size limit.
    let visitor = |n: usize| format!("{n:0>40}");
    let events: Vec<Event> = (0..6_000)
        .flat_map(|n| {
            let who = Who {
                anonymous_id: Some(visitor(n)),
                user_id: Some(format!("user-{}", visitor(n))),
            };
            let at_ms = 1_767_225_600_000 + n as i64;
            [
                Body::Identify { traits: Map::new() },
                Body::Touchpoint {
                    touchpoint: "site_visit".into(),
                    channel: "web".into(),
                    direct: true,
                    properties: Map::new(),
                },
            ]
            .into_iter()
            .enumerate()
            .map(move |(k, body)| Event {
                event_id: Uuid::from_u128((n * 2 + k) as u128 + 1),
                at_ms,
                received_ms: at_ms,
                who: who.clone(),
                body,
                ip: None,
            })
        })
        .collect();
    let batch = pairs(SHOP, &events);
    database.store.insert(&batch).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    let filter = JourneyFilter::default();
    let expected = embedded.journeys(SHOP, &filter).await.unwrap();
    let actual = database
        .store
        .journeys_without_properties(SHOP, &filter)
        .await;
    assert_eq!(expected.journeys.len(), 6_000);
    assert_eq!(named(&actual.unwrap()), named(&expected));
}

#[tokio::test]
async fn touchpoints_all_in_one_millisecond_answer_as_in_the_embedded_store() {
    let database = TestDatabase::migrated().await;
    let events: Vec<Event> = ["site_visit", "email_open", "purchase", "site_visit"]
        .into_iter()
        .enumerate()
        .map(|(n, touchpoint)| Event {
            event_id: Uuid::from_u128(n as u128 + 1),
            at_ms: 1_767_225_600_000,
            received_ms: 1_767_225_600_000,
            who: Who {
                anonymous_id: Some(format!("visitor-{}", n % 2)),
                user_id: None,
            },
            body: Body::Touchpoint {
                touchpoint: touchpoint.into(),
                channel: "web".into(),
                direct: true,
                properties: Map::new(),
            },
            ip: None,
        })
        .collect();
    let batch = pairs(SHOP, &events);
    database.store.insert(&batch).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    assert_same_answers(&database.store, &embedded, SHOP, &events).await;
}

#[tokio::test]
async fn quotes_backslashes_and_question_marks_are_data() {
    let database = TestDatabase::migrated().await;
    let project = r"it's \ ?";
    let who = Who {
        anonymous_id: Some("cookie?".into()),
        user_id: None,
    };
    let mut properties = Map::new();
    properties.insert("utm_medium".into(), r"it's \ ?".into());
    let mut traits = Map::new();
    traits.insert("persona?".into(), "who's ??".into());
    let events: Vec<Event> = [
        Body::Touchpoint {
            touchpoint: "site_visit".into(),
            channel: "web".into(),
            direct: true,
            properties: properties.clone(),
        },
        Body::Touchpoint {
            touchpoint: "purchase".into(),
            channel: "web".into(),
            direct: true,
            properties,
        },
        Body::Identify { traits },
    ]
    .into_iter()
    .enumerate()
    .map(|(n, body)| Event {
        event_id: Uuid::from_u128(n as u128 + 1),
        at_ms: 1_767_225_600_000 + n as i64 * 60_000,
        received_ms: 1_767_225_600_000,
        who: who.clone(),
        body,
        ip: None,
    })
    .collect();
    let batch = pairs(project, &events);
    database.store.insert(&batch).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    let filter = JourneyFilter {
        properties: vec![("utm_medium".into(), r"it's \ ?".into())],
        traits: vec![("persona?".into(), "who's ??".into())],
        ..JourneyFilter::default()
    };
    for view in [GraphView::State, GraphView::Positional] {
        let options = PathOptions {
            start: Some("site_visit".into()),
            ..PathOptions::default()
        };
        let expected = embedded.path_graph(project, &filter, view, &options).await;
        let actual = database
            .store
            .path_graph(project, &filter, view, &options)
            .await;
        let (expected, actual) = (expected.unwrap(), actual.unwrap());
        assert_eq!(expected.customers, 1, "{view:?}");
        assert_eq!(actual, expected, "{view:?}");
    }
    let customer = database
        .store
        .customer(project, &IdentityKey::anonymous("cookie?"))
        .await
        .unwrap()
        .expect("the visitor");
    assert_eq!(customer.touches.len(), 2);
}

/// `events` with a sender's address on every third one, as the collector records them.
fn with_addresses(mut events: Vec<Event>) -> Vec<Event> {
    for (index, event) in events.iter_mut().enumerate() {
        event.ip = match index % 3 {
            0 => Some("203.0.113.0".parse().unwrap()),
            1 => Some("2001:db8:1234::".parse().unwrap()),
            _ => None,
        };
    }
    events
}

/// Rows of `table` in `project` whose `column` is one of `identities`.
async fn rows_naming(
    database: &TestDatabase,
    table: &str,
    column: &str,
    identities: &[String],
) -> u64 {
    database
        .client()
        .query(&format!(
            "SELECT count() FROM {}.{table} WHERE project = ? AND has(?, {column})",
            database.name
        ))
        .bind(SHOP)
        .bind(identities)
        .fetch_one()
        .await
        .unwrap()
}

#[tokio::test]
async fn addresses_survive_the_round_trip_and_show_in_timelines() {
    let database = TestDatabase::migrated().await;
    let shop = with_addresses(demo(40, 7));
    let batch = pairs(SHOP, &shop);
    database.store.insert(&batch).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
    let visitor = shop
        .iter()
        .find(|event| event.ip.is_some() && matches!(event.body, Body::Touchpoint { .. }))
        .unwrap();
    let customer = database
        .store
        .customer(SHOP, &visitor.identities()[0])
        .await
        .unwrap()
        .unwrap();
    let step = customer
        .touches
        .iter()
        .find(|touch| touch.event_id == visitor.event_id)
        .unwrap();
    assert_eq!(step.ip, visitor.ip.map(|ip| ip.to_string()));
}

#[tokio::test]
async fn a_forgotten_customer_is_erased_from_every_table_and_late_events_stay_out() {
    let database = TestDatabase::migrated().await;
    let shop = with_addresses(demo(300, 7));
    let batch = pairs(SHOP, &shop);
    database.store.insert(&batch).await.unwrap();
    // A second copy, as a replay not merged yet leaves it: erased all the same.
    database.store.insert(&batch[..200]).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    // A customer with an identify and an alias: several identities in several tables.
    let identified = |user: &str| {
        shop.iter().any(|event| {
            matches!(event.body, Body::Identify { .. })
                && event.who.user_id.as_deref() == Some(user)
                && event.who.anonymous_id.is_some()
        })
    };
    let alias = shop
        .iter()
        .find(|event| {
            matches!(event.body, Body::Alias { .. })
                && identified(event.who.user_id.as_deref().unwrap())
        })
        .expect("the demo has identified customers with aliases");
    let ann = IdentityKey::user(alias.who.user_id.as_deref().unwrap());
    let expected = embedded.forget(SHOP, &ann).await.unwrap().unwrap();
    let forgotten = database.store.forget(SHOP, &ann).await.unwrap().unwrap();
    assert_eq!(forgotten, expected);
    assert!(forgotten.identities.len() >= 3, "{forgotten:?}");
    assert!(forgotten.complete, "the deletes finished in time");
    let keys: Vec<String> = forgotten
        .identities
        .iter()
        .map(|key| key.0.clone())
        .collect();
    for (table, column) in [
        ("identity_links", "identity"),
        ("identity_links", "linked"),
        ("identity_overrides", "identity"),
        ("identity_overrides", "customer"),
        ("traits", "identity"),
        ("journey_fragments", "identity"),
    ] {
        assert_eq!(
            rows_naming(&database, table, column, &keys).await,
            0,
            "{table}.{column}"
        );
    }
    assert_eq!(
        rows_naming(&database, "tombstones", "identity", &keys).await,
        keys.len() as u64
    );
    assert_eq!(database.store.forget(SHOP, &ann).await.unwrap(), None);

    // Late events of any of its identities, alone or with a new identity, are dropped.
    let late: Vec<Event> = forgotten
        .identities
        .iter()
        .enumerate()
        .map(|(n, key)| {
            let who = if key.is_user() {
                Who {
                    anonymous_id: Some(format!("fresh-{n}")),
                    user_id: Some(key.bare().to_owned()),
                }
            } else {
                Who {
                    anonymous_id: Some(key.bare().to_owned()),
                    user_id: None,
                }
            };
            Event {
                event_id: Uuid::from_u128(9_000 + n as u128),
                at_ms: 1_767_225_600_000 + 70 * DAY_MS,
                received_ms: 1_767_225_600_000 + 70 * DAY_MS,
                who,
                body: Body::Touchpoint {
                    touchpoint: "site_visit".into(),
                    channel: "web".into(),
                    direct: true,
                    properties: Map::new(),
                },
                ip: None,
            }
        })
        .collect();
    let late_batch = pairs(SHOP, &late);
    database.store.insert(&late_batch).await.unwrap();
    let outcome = embedded.apply(&late_batch, 2).unwrap();
    assert_eq!(outcome.tombstoned, late.len());
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
    for key in &forgotten.identities {
        assert_eq!(
            database.store.customer(SHOP, key).await.unwrap(),
            None,
            "{key:?}"
        );
    }
    // A store that connects later (another worker) reads the same tombstones.
    let other = ClickHouseStore::connect(&ClickHouseConfig {
        url: database.url.clone(),
        database: database.name.clone(),
    })
    .await
    .unwrap();
    other.insert(&late_batch).await.unwrap();
    assert_same_answers(&database.store, &embedded, SHOP, &shop).await;
}

#[tokio::test]
async fn a_retention_sweep_leaves_what_the_embedded_sweep_leaves() {
    let database = TestDatabase::migrated().await;
    let mut shop = with_addresses(demo(300, 7));
    // Touchpoints naming two identities link them: expired, they must keep the link.
    let start = DemoOptions::default().start_ms;
    for (n, (at_day, anonymous, user)) in [(2, "link-a", "link-u"), (40, "link-b", "link-u")]
        .into_iter()
        .enumerate()
    {
        shop.push(Event {
            event_id: Uuid::from_u128(8_000 + n as u128),
            at_ms: start + at_day * DAY_MS,
            received_ms: start + at_day * DAY_MS,
            who: Who {
                anonymous_id: Some(anonymous.into()),
                user_id: Some(user.into()),
            },
            body: Body::Touchpoint {
                touchpoint: "site_visit".into(),
                channel: "web".into(),
                direct: true,
                properties: Map::new(),
            },
            ip: Some("203.0.113.0".parse().unwrap()),
        });
    }
    let batch = pairs(SHOP, &shop);
    database.store.insert(&batch).await.unwrap();
    let (_dir, embedded) = embedded(&batch);
    let cutoff = start + 25 * DAY_MS;
    let expected = embedded.expire(SHOP, cutoff).await.unwrap();
    let expired = database.store.expire(SHOP, cutoff).await.unwrap();
    assert_eq!(expired, expected);
    assert!(expired.touches > 100 && expired.traits > 10, "{expired:?}");
    let mut asked = shop.clone();
    asked.retain(|event| !event.identities().is_empty());
    assert_same_answers(&database.store, &embedded, SHOP, &asked).await;
    let link = database
        .store
        .customer(SHOP, &IdentityKey::anonymous("link-a"))
        .await
        .unwrap()
        .expect("the expired touchpoint's link stays");
    assert_eq!(link.customer_id, IdentityKey::user("link-u"));
    assert_eq!(link.touches.len(), 1, "only the touchpoint of day 40");
    let old_fragment_touches: u64 = database
        .client()
        .query(&format!(
            "SELECT count() FROM {}.journey_fragments ARRAY JOIN times AS t WHERE t < ?",
            database.name
        ))
        .bind(cutoff)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old_fragment_touches, 0);
    let old_addresses: u64 = database
        .client()
        .query(&format!(
            "SELECT count() FROM {}.events WHERE at_ms < ? AND (ip != '' OR traits != '{{}}')",
            database.name
        ))
        .bind(cutoff)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old_addresses, 0, "kept links carry no address or traits");
    // A second sweep finds nothing to do, and new events extend the swept fragments.
    assert_eq!(
        database.store.expire(SHOP, cutoff).await.unwrap().touches,
        0
    );
    let later = demo(300, 8);
    let later_batch = pairs(SHOP, &later);
    database.store.insert(&later_batch).await.unwrap();
    embedded.apply(&later_batch, 2).unwrap();
    assert_same_answers(&database.store, &embedded, SHOP, &asked).await;
}

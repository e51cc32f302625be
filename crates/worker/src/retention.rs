//! Retention sweeps: every project with a retention period (`Project::retention_days`) loses
//! what [`scribble_domain::privacy::expiry`] says of its events older than that, by event time.
//! A process that writes a store sweeps it at start and then every
//! [`DEFAULT_SWEEP_INTERVAL`] (`--retention-sweep-seconds`): `serve` its store, each scale-out
//! worker the ClickHouse store. Sweeps are idempotent, so several workers sweeping one store
//! do no harm; a sweep that finds nothing to remove changes nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scribble_domain::privacy::retention_cutoff_ms;
use scribble_domain::project::{LiveProjects, Projects};
use scribble_domain::stitch::Expired;
use scribble_store::JourneyStore;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

/// How often a process sweeps when not told otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Sweeps every project of `projects` that has a retention period, as of `now_ms`. A project
/// whose sweep fails is logged and left for the next sweep; the others still run. Returns what
/// each successful sweep removed, in project order.
pub async fn sweep(
    store: &dyn JourneyStore,
    projects: &Projects,
    now_ms: i64,
) -> Vec<(String, Expired)> {
    let mut swept = Vec::new();
    for project in &projects.projects {
        let Some(days) = project.retention_days else {
            continue;
        };
        let cutoff_ms = retention_cutoff_ms(now_ms, days);
        match store.expire(&project.name, cutoff_ms).await {
            Ok(expired) => {
                if expired != Expired::default() {
                    info!(
                        project = %project.name,
                        retention_days = days,
                        touchpoints = expired.touches,
                        traits = expired.traits,
                        "retention sweep removed expired data"
                    );
                } else {
                    debug!(project = %project.name, "retention sweep found nothing to remove");
                }
                swept.push((project.name.clone(), expired));
            }
            Err(error) => {
                warn!(project = %project.name, %error, "retention sweep failed; the next one retries")
            }
        }
    }
    swept
}

/// Sweeps `store` for the projects served at each moment: at once, then every `every`, until
/// `shutdown` resolves.
pub async fn run(
    store: Arc<dyn JourneyStore>,
    projects: LiveProjects,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut shutdown => return,
        }
        let served = projects.current();
        tokio::select! {
            _ = sweep(store.as_ref(), served.projects(), now_ms()) => {}
            // An unfinished sweep is only cut short: the next process start repeats it.
            _ = &mut shutdown => return,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribble_domain::event::{Body, Event, Who};
    use scribble_domain::project::Project;
    use scribble_store::EmbeddedStore;
    use uuid::Uuid;

    const DAY_MS: i64 = 24 * 3600 * 1000;
    const NOW_MS: i64 = 1_800_000_000_000;

    fn visit(n: u128, days_old: i64) -> Event {
        Event {
            event_id: Uuid::from_u128(n),
            at_ms: NOW_MS - days_old * DAY_MS,
            received_ms: NOW_MS,
            who: Who {
                anonymous_id: Some(format!("visitor-{n}")),
                user_id: None,
            },
            body: Body::Touchpoint {
                touchpoint: "site_visit".into(),
                channel: "web".into(),
                direct: true,
                properties: Default::default(),
            },
            ip: None,
        }
    }

    #[tokio::test]
    async fn only_projects_with_a_retention_period_lose_their_old_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let (old, recent) = (visit(1, 40), visit(2, 10));
        let batch: Vec<(&str, &Event)> = ["shop", "blog"]
            .into_iter()
            .flat_map(|project| [(project, &old), (project, &recent)])
            .collect();
        store.apply(&batch, 1).unwrap();
        let projects = Projects {
            projects: vec![
                Project {
                    name: "shop".into(),
                    retention_days: Some(30),
                    ..Project::default()
                },
                Project {
                    name: "blog".into(),
                    ..Project::default()
                },
            ],
        };
        let swept = sweep(&Arc::clone(&store), &projects, NOW_MS).await;
        assert_eq!(
            swept,
            [(
                "shop".to_owned(),
                Expired {
                    touches: 1,
                    traits: 0
                }
            )]
        );
        assert_eq!(store.read("shop", |book| book.touch_count()), 1);
        assert_eq!(
            store.read("blog", |book| book.touch_count()),
            2,
            "kept for ever"
        );
        let again = sweep(&Arc::clone(&store), &projects, NOW_MS).await;
        assert_eq!(again, [("shop".to_owned(), Expired::default())]);
    }

    #[tokio::test]
    async fn the_sweeper_sweeps_at_start_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let old = visit(1, 400);
        store.apply(&[("shop", &old)], 1).unwrap();
        let projects = LiveProjects::new(Projects {
            projects: vec![Project {
                name: "shop".into(),
                retention_days: Some(30),
                ..Project::default()
            }],
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(run(
            Arc::new(store.clone()),
            projects,
            Duration::from_secs(3600),
            async {
                let _ = stopped.await;
            },
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.read("shop", |book| book.touch_count()) > 0 {
            assert!(std::time::Instant::now() < deadline, "no sweep at start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), sweeper)
            .await
            .expect("the sweeper stops on shutdown")
            .unwrap();
    }
}

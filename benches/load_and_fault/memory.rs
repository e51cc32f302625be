//! Memory of every process of a run, read from `/proc/PID/status` a few times a second: the peak
//! resident set of each role over all its incarnations (a restarted worker is the same role), and
//! the resident set over time (`VmRSS`) to show whether it levels off or keeps growing. The peak
//! is the kernel's `VmHWM` for processes the run started; for those that were running before (the
//! servers of `scripts/test-servers`, the load client itself) it is the highest `VmRSS` sampled,
//! since their `VmHWM` remembers earlier runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(250);

/// Samples the watched processes on a thread of its own until dropped.
pub struct MemoryWatch {
    state: Arc<Mutex<Watched>>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

struct Watched {
    /// Processes sampled now: role, process id, and how their peak is read.
    live: Vec<(String, u32, Peak)>,
    /// Peak resident KiB of each role.
    peak_kib: BTreeMap<String, u64>,
    /// Resident KiB of each role over time: seconds since the watch started, KiB.
    resident: BTreeMap<String, Vec<(f64, u64)>>,
    started: Instant,
}

/// Where a process's peak comes from.
#[derive(Debug, Clone, Copy)]
pub enum Peak {
    /// `VmHWM`: the process started during the run.
    HighWaterMark,
    /// The highest `VmRSS` sampled: the process ran before.
    Sampled,
}

/// What one `/proc/PID/status` says about memory.
struct Sample {
    resident_kib: u64,
    peak_kib: u64,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(field))?;
        line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Sample {
        resident_kib: kib("VmRSS:")?,
        peak_kib: kib("VmHWM:")?,
    })
}

impl Watched {
    fn record(&mut self, role: &str, pid: u32, source: Peak) {
        let Some(sample) = sample(pid) else { return };
        let peak = self.peak_kib.entry(role.to_owned()).or_default();
        *peak = (*peak).max(match source {
            Peak::HighWaterMark => sample.peak_kib,
            Peak::Sampled => sample.resident_kib,
        });
        let seconds = self.started.elapsed().as_secs_f64();
        self.resident
            .entry(role.to_owned())
            .or_default()
            .push((seconds, sample.resident_kib));
    }

    fn record_all(&mut self) {
        for (role, pid, source) in self.live.clone() {
            self.record(&role, pid, source);
        }
    }
}

impl MemoryWatch {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(Watched {
            live: Vec::new(),
            peak_kib: BTreeMap::new(),
            resident: BTreeMap::new(),
            started: Instant::now(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    state.lock().unwrap().record_all();
                    std::thread::sleep(EVERY);
                }
            })
        };
        Self {
            state,
            stop,
            sampler: Some(sampler),
        }
    }

    /// Samples `pid` as `role` from now on, its peak read from `source`.
    pub fn watch(&self, role: &str, pid: u32, source: Peak) {
        let mut state = self.state.lock().unwrap();
        state.record(role, pid, source);
        state.live.push((role.to_owned(), pid, source));
    }

    /// Samples `pid` one last time and stops sampling it: call it just before the process is
    /// stopped, so its peak is not missed.
    pub fn forget(&self, pid: u32) {
        let mut state = self.state.lock().unwrap();
        if let Some(index) = state.live.iter().position(|(_, live, _)| *live == pid) {
            let (role, _, source) = state.live.remove(index);
            state.record(&role, pid, source);
        }
    }

    /// Samples every watched process now.
    pub fn sample_now(&self) {
        self.state.lock().unwrap().record_all();
    }

    /// Peak resident MiB of each role seen so far.
    pub fn peaks_mib(&self) -> BTreeMap<String, f64> {
        let state = self.state.lock().unwrap();
        state
            .peak_kib
            .iter()
            .map(|(role, kib)| (role.clone(), *kib as f64 / 1024.0))
            .collect()
    }

    /// The highest resident MiB of `role` in each `window` from `from_seconds` on (seconds since
    /// the watch started), for a picture of growth over a run; `None` for a window without a
    /// sample (the sampler got no CPU in it).
    pub fn resident_mib_series(
        &self,
        role: &str,
        from_seconds: f64,
        window: f64,
    ) -> Vec<Option<f64>> {
        let state = self.state.lock().unwrap();
        let mut series: Vec<Option<f64>> = Vec::new();
        for &(seconds, kib) in state.resident.get(role).into_iter().flatten() {
            if seconds < from_seconds {
                continue;
            }
            let index = ((seconds - from_seconds) / window) as usize;
            if series.len() <= index {
                series.resize(index + 1, None);
            }
            let mib = kib as f64 / 1024.0;
            series[index] = Some(series[index].map_or(mib, |highest| highest.max(mib)));
        }
        series
    }

    /// Seconds since the watch started.
    pub fn now_seconds(&self) -> f64 {
        self.state.lock().unwrap().started.elapsed().as_secs_f64()
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
    }
}

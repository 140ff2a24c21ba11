//! Group commit: the one thread that writes.
//!
//! Submissions wait in a bounded queue. The sequencer takes the first one,
//! collects whatever else arrives within the batch interval (or is already
//! waiting) up to the batch limit, sequences them all as one ledger batch
//! (one commit, one signature), and answers each submitter with its events'
//! outcomes and the checkpoint; each submitter's handler then makes its
//! inclusion proofs ([`Sequenced::answer`]). While one batch is being
//! made durable, the next one fills: throughput grows with load without
//! adding latency when idle.

use super::metrics::Metrics;
use super::{AcceptedJson, ApiError, InclusionJson, Reader, SharedLedger};
use crate::ledger::{Authorized, LedgerError, Outcome, Refusal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Tuning of the sequencer.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// How long to wait for more submissions after the first one of a batch.
    /// Zero: take only what is already waiting (natural group commit).
    pub batch_interval: Duration,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Most submissions (requests) being checked or waiting; beyond it, 503.
    pub queue_requests: usize,
    /// A head record is appended alone after this long without events.
    pub heartbeat: Duration,
    /// The sequencer thread's nice value (Linux; -20 … 19, lower runs
    /// first). The sequencer is the one thread that writes, so every
    /// submission waits on it; at the same priority as the handlers it
    /// spent a quarter of a busy run waiting for a core (BENCHMARKS.md,
    /// seventh session). A value below the process's own needs
    /// CAP_SYS_NICE or RLIMIT_NICE; without them the thread keeps the
    /// process's priority and says so in the log. `None`: leave it.
    pub nice: Option<i32>,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            batch_interval: Duration::ZERO,
            max_batch: 4096,
            queue_requests: 1024,
            heartbeat: Duration::from_secs(60),
            nice: Some(DEFAULT_NICE),
        }
    }
}

/// The sequencer's nice value unless configured otherwise.
pub const DEFAULT_NICE: i32 = -10;

/// The answer for one submitted event.
pub type ItemResult = Result<AcceptedJson, Refusal>;

struct Job {
    entries: Authorized,
    /// Its place in the queue, given back when the sequencer takes it.
    _slot: OwnedSemaphorePermit,
    arrived: Instant,
    reply: oneshot::Sender<Result<Sequenced, ApiError>>,
}

/// Where a job's answer goes once its entries went into a batch.
struct Reply {
    len: usize,
    arrived: Instant,
    reply: oneshot::Sender<Result<Sequenced, ApiError>>,
}

/// The handle handlers use to submit.
#[derive(Clone)]
pub struct Sequencer {
    tx: SyncSender<Job>,
    /// Places in the queue: held from before a request's signature checks
    /// until the sequencer takes the request, so that a full queue is
    /// refused before any work is spent on it.
    slots: Arc<Semaphore>,
    running: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// The configured nice value was set (or none was configured).
    priority_set: bool,
}

/// The milliseconds since the Unix epoch on this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Sequencer {
    /// Starts the sequencer thread. It stops when every `Sequencer` handle
    /// is dropped, after answering everything queued; join the returned
    /// handle to wait for that.
    pub fn start(
        ledger: SharedLedger,
        config: SequencerConfig,
        metrics: Arc<Metrics>,
    ) -> (Sequencer, std::thread::JoinHandle<()>) {
        let queue = config.queue_requests.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let running = Arc::new(AtomicBool::new(true));
        let (set, was_set) = mpsc::sync_channel::<bool>(1);
        let thread_running = running.clone();
        let thread_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || {
                let ok = match config.nice {
                    None => true,
                    Some(nice) => match crate::priority::set_thread_nice(nice) {
                        Ok(()) => {
                            tracing::debug!(nice, "sequencer priority set");
                            true
                        }
                        Err(e) => {
                            tracing::warn!(
                                nice,
                                error = %e,
                                "cannot set the sequencer's priority (it needs CAP_SYS_NICE or \
                                 RLIMIT_NICE to go below the process's); it runs at the \
                                 process's own"
                            );
                            false
                        }
                    },
                };
                // `start` waits for this before it returns.
                let _ = set.send(ok);
                run(&ledger, &config, &thread_metrics, &rx);
                thread_running.store(false, Ordering::SeqCst);
            })
            .unwrap_or_else(|e| panic!("cannot start the sequencer thread: {e}"));
        let seq = Sequencer {
            tx,
            slots: Arc::new(Semaphore::new(queue)),
            running,
            metrics,
            // No answer: the thread died before it, and is_running says so.
            priority_set: was_set.recv().unwrap_or(false),
        };
        (seq, handle)
    }

    /// Whether the configured nice value was set (true when none was).
    pub fn priority_set(&self) -> bool {
        self.priority_set
    }

    /// Whether the sequencer thread is alive.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// A place in the queue for one request, taken before its signatures
    /// are checked.
    ///
    /// # Errors
    /// 503 with `Retry-After` when the queue is full or the node stops.
    pub fn reserve(&self) -> Result<Slot, ApiError> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot {
                sequencer: self.clone(),
                permit,
            }),
            Err(TryAcquireError::NoPermits) => {
                self.metrics.shed.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::unavailable(
                    "overloaded",
                    "the submission queue is full; retry later",
                    1,
                ))
            }
            Err(TryAcquireError::Closed) => {
                Err(ApiError::unavailable("stopping", "the node is stopping", 5))
            }
        }
    }
}

/// A reserved place in the submission queue ([`Sequencer::reserve`]).
pub struct Slot {
    sequencer: Sequencer,
    permit: OwnedSemaphorePermit,
}

impl Slot {
    /// Queues `entries` and waits until they are sequenced and checkpointed.
    ///
    /// # Errors
    /// 503 with `Retry-After` when the node stops.
    pub async fn submit(self, entries: Authorized) -> Result<Sequenced, ApiError> {
        let Slot { sequencer, permit } = self;
        let n = entries.len() as u64;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            entries,
            _slot: permit,
            arrived: Instant::now(),
            reply,
        };
        match sequencer.tx.try_send(job) {
            Ok(()) => {
                sequencer
                    .metrics
                    .queue_depth
                    .fetch_add(n, Ordering::Relaxed);
            }
            // Not while slots bound the queue to its capacity.
            Err(TrySendError::Full(_)) => {
                sequencer.metrics.shed.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::unavailable(
                    "overloaded",
                    "the submission queue is full; retry later",
                    1,
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::unavailable("stopping", "the node is stopping", 5))
            }
        }
        rx.await.map_err(|_| {
            ApiError::unavailable("stopping", "the node stopped before sequencing", 5)
        })?
    }
}

fn run(
    ledger: &SharedLedger,
    config: &SequencerConfig,
    metrics: &Metrics,
    rx: &mpsc::Receiver<Job>,
) {
    let mut last_append = Instant::now();
    loop {
        let idle = config.heartbeat.saturating_sub(last_append.elapsed());
        let first = match rx.recv_timeout(idle) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                heartbeat(ledger, metrics);
                last_append = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = l.save_checkpoint() {
                    tracing::warn!(error = %e, "the last checkpoint or the map's pages were not stored; the next start signs it again and replays the map changes kept");
                }
                let started = Instant::now();
                match l.store().settle() {
                    Ok(()) => tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "the index's buffers are written out: the next start replays nothing"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "the index's buffers were not written out; the next start replays its journal")
                    }
                }
                return;
            }
        };
        let mut jobs = vec![first];
        let mut count = jobs[0].entries.len();
        let deadline = Instant::now() + config.batch_interval;
        while count < config.max_batch {
            let next = match deadline.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => rx.recv_timeout(wait).ok(),
                _ => rx.try_recv().ok(),
            };
            match next {
                Some(job) => {
                    count += job.entries.len();
                    jobs.push(job);
                }
                None => break,
            }
        }
        metrics
            .queue_depth
            .fetch_sub(count as u64, Ordering::Relaxed);
        sequence(ledger, metrics, jobs);
        last_append = Instant::now();
    }
}

fn heartbeat(ledger: &SharedLedger, metrics: &Metrics) {
    let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
    match l.append_heartbeat(now_ms()) {
        Ok(c) => {
            metrics.heartbeats.fetch_add(1, Ordering::Relaxed);
            metrics.tree_size.store(c.size(), Ordering::Relaxed);
        }
        Err(e) => tracing::error!(error = %e, "heartbeat failed"),
    }
}

/// One batch: sequence every job's entries together, then answer each job.
fn sequence(ledger: &SharedLedger, metrics: &Metrics, jobs: Vec<Job>) {
    // Dropping each job's slot here frees its place in the queue.
    let (parts, jobs): (Vec<Authorized>, Vec<Reply>) = jobs
        .into_iter()
        .map(|j| {
            let reply = Reply {
                len: j.entries.len(),
                arrived: j.arrived,
                reply: j.reply,
            };
            (j.entries, reply)
        })
        .unzip();
    let events: usize = jobs.iter().map(|j| j.len).sum();
    let result = {
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        // After a storage failure, reopen (which runs the recovery checks)
        // before taking more work.
        if l.poisoned().is_some() {
            if let Err(e) = l.recover(now_ms()) {
                tracing::error!(error = %e, "recovery failed");
            }
        }
        let before = l.checkpoint().size();
        l.append_authorized(parts, now_ms()).map(|b| (b, before))
    };
    let (batch, before) = match result {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, events, "batch failed; nothing acknowledged");
            for job in jobs {
                let _ = job.reply.send(Err(ApiError::from(e.clone())));
            }
            return;
        }
    };
    // A round where every event was refused or a duplicate writes nothing.
    if batch.checkpoint.size() > before {
        metrics.batches.fetch_add(1, Ordering::Relaxed);
        metrics
            .batch_size
            .observe((batch.checkpoint.size() - before - 1) as f64);
    }
    metrics
        .tree_size
        .store(batch.checkpoint.size(), Ordering::Relaxed);
    let size = batch.checkpoint.size();
    let checkpoint: Arc<str> = batch.checkpoint.note_text().into();
    let mut outcomes = batch.outcomes.into_iter();
    for job in jobs {
        let mine: Vec<Outcome> = outcomes.by_ref().take(job.len).collect();
        for outcome in &mine {
            match outcome {
                Outcome::Accepted { .. } => {
                    metrics.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Duplicate { .. } => {
                    metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Refused(r) => metrics.refused(r.code()),
            }
        }
        metrics
            .submit_to_checkpoint
            .observe(job.arrived.elapsed().as_secs_f64());
        let _ = job.reply.send(Ok(Sequenced {
            outcomes: mine,
            checkpoint: checkpoint.clone(),
            size,
        }));
    }
}

/// What the sequencer answers a request with: its events' outcomes, in
/// order, and the published checkpoint that covers the accepted ones.
/// The inclusion proofs are made by the request's own handler
/// ([`Sequenced::answer`]), off the one thread that writes.
pub struct Sequenced {
    outcomes: Vec<Outcome>,
    checkpoint: Arc<str>,
    size: u64,
}

impl Sequenced {
    /// Each event's answer: for an accepted (or already logged) event its
    /// index, the checkpoint and its inclusion proof in that checkpoint's
    /// tree; else why it was refused.
    ///
    /// # Errors
    /// A storage error while reading the proofs' hashes (the events are
    /// logged all the same).
    pub fn answer(self, ledger: &Reader) -> Result<Vec<ItemResult>, ApiError> {
        let indexes: Vec<u64> = self
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Accepted { index, .. } | Outcome::Duplicate { index, .. } => Some(*index),
                Outcome::Refused(_) => None,
            })
            .collect();
        // Every proof at once: they share most of their hashes.
        let mut proofs = ledger.inclusion_proofs(&indexes, self.size)?.into_iter();
        let mut items = Vec::with_capacity(self.outcomes.len());
        for outcome in self.outcomes {
            let (index, leaf_hash, duplicate) = match outcome {
                Outcome::Accepted { index, leaf_hash } => (index, leaf_hash, false),
                Outcome::Duplicate { index, leaf_hash } => (index, leaf_hash, true),
                Outcome::Refused(r) => {
                    items.push(Err(r));
                    continue;
                }
            };
            let hashes = proofs.next().ok_or_else(|| {
                ApiError::from(LedgerError::Corrupt("an inclusion proof is missing".into()))
            })?;
            items.push(Ok(AcceptedJson {
                index,
                leaf_hash,
                duplicate,
                checkpoint: self.checkpoint.to_string(),
                inclusion: InclusionJson {
                    index,
                    size: self.size,
                    leaf_hash: Some(leaf_hash),
                    hashes,
                },
            }));
        }
        Ok(items)
    }

    /// How many events the answer is about.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether it is about no event (never, for a request the sequencer took).
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

//! Group commit: many callers, one writer thread, one transaction per group.
//!
//! Callers [`CommitQueue::submit`] a batch and get a [`CommitTicket`]. The writer (a plain
//! std thread, so the crate works under any async runtime or none) takes the first waiting
//! batch, keeps collecting for up to `commit_interval` or until `max_group_mutations`, applies
//! the whole group in one transaction and then completes every ticket of the group.
//!
//! If the group fails, it is retried batch by batch, so one bad batch (say, a mutation for
//! an unknown session) fails only its own ticket.
//!
//! # Fsync policies and what each can lose
//! | policy | commit durability | lost on `kill -9` | lost on power loss / OS crash |
//! |---|---|---|---|
//! | `Always` | fsync every group | nothing acknowledged | nothing acknowledged |
//! | `Interval` | fsync every `fsync_interval` (100 ms) | up to the last interval of acknowledged batches (measured: 12–96 of ~350 per kill, `tests/crash.rs`) | the same |
//! | `Never` | fsync only every 60 s and at shutdown | up to 60 s of acknowledged batches | the same |
//!
//! redb has no "written but not fsynced" commit that survives a process kill: a
//! non-durable commit (`redb::Durability::None`) writes its pages but not the file header
//! pointing at them, so a reopened file shows the last fsynced commit, whether the process
//! or the machine died. That is why `Interval` and `Never` lose the same on both. Only
//! `Always` gives "acknowledged means durable"; its cost is one fsync per group, shared by
//! every batch in the group. `Never` still fsyncs once a minute because redb frees pages only
//! at durable commits: without them the file would grow without bound.
//!
//! # Back-pressure
//! The queue holds at most `queue_capacity` batches. `submit` blocks while it is full (and
//! counts the wait); `try_submit` hands the batch back instead, for async callers that must
//! not block a runtime thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ticket::{CommitTicket, Completer};
use crate::{Durability, Mutation, Store, StoreError};

/// When commits reach stable storage (see the module docs for what each can lose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every group commit is fsynced before its tickets complete.
    #[default]
    Always,
    /// Groups commit without fsync; an fsync runs every `fsync_interval`.
    Interval,
    /// Groups commit without fsync; an fsync runs every [`NEVER_CHECKPOINT`] and at shutdown.
    Never,
}

/// How often `FsyncPolicy::Never` still makes the store durable (redb reclaims space only
/// at durable commits).
pub const NEVER_CHECKPOINT: Duration = Duration::from_secs(60);

/// Settings of a [`CommitQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitConfig {
    /// How long the writer collects batches after the first one before committing.
    /// `Duration::ZERO`: commit whatever is queued at once (groups then form while the
    /// previous commit runs). Measured with 32 publishers waiting for their acks (2-core VM,
    /// `examples/commit_bench.rs`), ZERO gave 28 k msg/s at 1.1 ms against 9.8 k msg/s at
    /// 3.1 ms for 2 ms under `Always`: when fsync is the bottleneck, waiting adds nothing.
    pub commit_interval: Duration,
    /// A group is committed once it holds this many mutations, even before the interval.
    pub max_group_mutations: usize,
    /// Batches waiting for the writer before `submit` blocks.
    pub queue_capacity: usize,
    /// When commits are fsynced.
    pub fsync: FsyncPolicy,
    /// For `FsyncPolicy::Interval`: the longest time a commit stays un-fsynced.
    pub fsync_interval: Duration,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            commit_interval: Duration::from_millis(2),
            max_group_mutations: 4096,
            queue_capacity: 8192,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(100),
        }
    }
}

/// Counters of a [`CommitQueue`], for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches submitted.
    pub batches: u64,
    /// Mutations submitted.
    pub mutations: u64,
    /// Transactions committed (groups, plus one per batch of a retried group).
    pub transactions: u64,
    /// Transactions that were fsynced (including checkpoints).
    pub fsyncs: u64,
    /// Batches that failed.
    pub failed_batches: u64,
    /// Times `submit` had to wait because the queue was full.
    pub backpressure_waits: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    mutations: AtomicU64,
    transactions: AtomicU64,
    fsyncs: AtomicU64,
    failed_batches: AtomicU64,
    backpressure_waits: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Request {
    mutations: Vec<Mutation>,
    completer: Completer,
}

/// The group-commit front of a [`Store`]. Dropping it commits what is queued, fsyncs and
/// stops the writer.
pub struct CommitQueue {
    sender: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for CommitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitQueue")
            .field("stats", &self.stats())
            .finish()
    }
}

impl CommitQueue {
    /// Starts the writer thread for `store`.
    pub fn start(store: Arc<dyn Store>, config: CommitConfig) -> Result<CommitQueue, StoreError> {
        let (sender, receiver) = sync_channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            store,
            config,
            receiver,
            counters: Arc::clone(&counters),
            last_fsync: Instant::now(),
            unsynced: false,
        };
        let writer = std::thread::Builder::new()
            .name("fulmar-store-commit".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io("starting the commit thread", e))?;
        Ok(CommitQueue {
            sender: Some(sender),
            writer: Some(writer),
            counters,
        })
    }

    /// Queues `mutations` as one atomic batch, waiting while the queue is full.
    pub fn submit(&self, mutations: Vec<Mutation>) -> CommitTicket {
        match self.try_submit(mutations) {
            Ok(ticket) => ticket,
            Err(mutations) => {
                bump(&self.counters.backpressure_waits, 1);
                let (ticket, completer) = CommitTicket::new();
                let request = Request {
                    mutations,
                    completer,
                };
                // On a closed queue the request (and its completer) is dropped, which fails
                // the ticket with `Closed`.
                if let Some(sender) = &self.sender {
                    let _ = sender.send(request);
                }
                ticket
            }
        }
    }

    /// Queues `mutations` if there is room; hands them back when the queue is full.
    pub fn try_submit(&self, mutations: Vec<Mutation>) -> Result<CommitTicket, Vec<Mutation>> {
        let Some(sender) = &self.sender else {
            return Ok(CommitTicket::ready(Err(StoreError::Closed)));
        };
        let count = mutations.len() as u64;
        let (ticket, completer) = CommitTicket::new();
        match sender.try_send(Request {
            mutations,
            completer,
        }) {
            Ok(()) => {
                bump(&self.counters.batches, 1);
                bump(&self.counters.mutations, count);
                Ok(ticket)
            }
            Err(TrySendError::Full(request)) => {
                // Not submitted: the ticket and its completer are dropped unseen.
                Err(request.mutations)
            }
            Err(TrySendError::Disconnected(_)) => Ok(ticket),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CommitStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CommitStats {
            batches: load(&c.batches),
            mutations: load(&c.mutations),
            transactions: load(&c.transactions),
            fsyncs: load(&c.fsyncs),
            failed_batches: load(&c.failed_batches),
            backpressure_waits: load(&c.backpressure_waits),
        }
    }

    /// Commits everything queued, fsyncs, and stops the writer.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sender = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for CommitQueue {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread's state.
struct Writer {
    store: Arc<dyn Store>,
    config: CommitConfig,
    receiver: Receiver<Request>,
    counters: Arc<Counters>,
    last_fsync: Instant,
    /// Some commit since the last fsync was not fsynced.
    unsynced: bool,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = match self.checkpoint_due() {
                None => self
                    .receiver
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(due) => self
                    .receiver
                    .recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            match first {
                Ok(request) => {
                    let (group, open) = self.collect(request);
                    self.commit(group);
                    if !open {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.checkpoint(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if self.unsynced {
            self.checkpoint();
        }
    }

    /// When the next fsync of un-fsynced commits is due, if any is pending.
    fn checkpoint_due(&self) -> Option<Instant> {
        let every = match self.config.fsync {
            FsyncPolicy::Always => return None,
            FsyncPolicy::Interval => self.config.fsync_interval,
            FsyncPolicy::Never => NEVER_CHECKPOINT,
        };
        self.unsynced.then_some(self.last_fsync + every)
    }

    /// Gathers a group starting with `first`. Returns it, and false if the queue closed.
    fn collect(&self, first: Request) -> (Vec<Request>, bool) {
        let deadline = Instant::now() + self.config.commit_interval;
        let mut count = first.mutations.len();
        let mut group = vec![first];
        while count < self.config.max_group_mutations {
            let next = if self.config.commit_interval.is_zero() {
                self.receiver.try_recv().map_err(|e| match e {
                    std::sync::mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    std::sync::mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                self.receiver.recv_timeout(left)
            };
            match next {
                Ok(request) => {
                    count += request.mutations.len();
                    group.push(request);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return (group, false),
            }
        }
        (group, true)
    }

    fn durability(&self) -> Durability {
        match self.config.fsync {
            FsyncPolicy::Always => Durability::Immediate,
            FsyncPolicy::Interval if self.last_fsync.elapsed() >= self.config.fsync_interval => {
                Durability::Immediate
            }
            FsyncPolicy::Interval | FsyncPolicy::Never => Durability::Deferred,
        }
    }

    fn commit(&mut self, mut group: Vec<Request>) {
        let durability = self.durability();
        // Move (not clone) every batch into one transaction; keep the lengths to split it
        // back if it has to be retried batch by batch.
        let lens: Vec<usize> = group.iter().map(|r| r.mutations.len()).collect();
        let mut all = Vec::with_capacity(lens.iter().sum());
        for request in &mut group {
            all.append(&mut request.mutations);
        }
        let result = self.store.apply(&all, durability);
        self.record(durability);
        match result {
            Ok(()) => {
                for request in group {
                    request.completer.complete(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => self.fail(group, e),
            Err(_) => {
                let mut rest = all.into_iter();
                for (request, len) in group.into_iter().zip(lens) {
                    let batch: Vec<Mutation> = rest.by_ref().take(len).collect();
                    let result = self.store.apply(&batch, durability);
                    self.record(durability);
                    match result {
                        Ok(()) => request.completer.complete(Ok(())),
                        Err(e) => self.fail(vec![request], e),
                    }
                }
            }
        }
    }

    fn record(&mut self, durability: Durability) {
        bump(&self.counters.transactions, 1);
        if durability == Durability::Immediate {
            bump(&self.counters.fsyncs, 1);
            self.last_fsync = Instant::now();
            self.unsynced = false;
        } else {
            self.unsynced = true;
        }
    }

    fn fail(&self, requests: Vec<Request>, error: StoreError) {
        for request in requests {
            bump(&self.counters.failed_batches, 1);
            request.completer.complete(Err(error.clone()));
        }
    }

    fn checkpoint(&mut self) {
        // A failed fsync is retried at the next checkpoint; the commits it covers were
        // already acknowledged under a policy that allows losing them.
        if self.store.sync().is_ok() {
            self.record(Durability::Immediate);
        }
    }
}

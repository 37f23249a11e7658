//! Group commit: many submitters, every ticket completes, far fewer transactions than batches;
//! a bad batch fails alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use fulmar_store::{CommitConfig, CommitQueue, FsyncPolicy, Mutation, RedbOptions, RedbStore};
use fulmar_store::{Store, StoreError};

use common::{body, enqueue, session};

fn redb_queue(dir: &std::path::Path, config: CommitConfig) -> (Arc<RedbStore>, CommitQueue) {
    let store = Arc::new(RedbStore::open(dir, RedbOptions::default()).unwrap());
    let queue = CommitQueue::start(Arc::clone(&store) as Arc<dyn Store>, config).unwrap();
    (store, queue)
}

#[test]
fn many_threads_share_few_transactions_and_every_ticket_completes() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = redb_queue(dir.path(), CommitConfig::default());
    let sessions = (0..THREADS).map(|t| session(&format!("c{t}"))).collect();
    queue.submit(sessions).wait().unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (queue, store) = (&queue, &store);
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    let m = body(store.as_ref(), "t", &seq.to_le_bytes());
                    queue
                        .submit(vec![enqueue(&format!("c{t}"), seq, &m)])
                        .wait()
                        .unwrap();
                }
            });
        }
    });
    let stats = queue.stats();
    assert_eq!(stats.batches, THREADS * PER_THREAD + 1);
    assert_eq!(stats.failed_batches, 0);
    assert!(
        stats.transactions < stats.batches / 2,
        "group commit shares transactions: {stats:?}"
    );
    assert_eq!(
        stats.fsyncs, stats.transactions,
        "policy always fsyncs each group"
    );
    assert_eq!(store.usage().queued, THREADS * PER_THREAD);
}

#[test]
fn a_bad_batch_fails_alone_and_the_rest_of_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let config = CommitConfig {
        commit_interval: Duration::from_millis(50),
        ..CommitConfig::default()
    };
    let (store, queue) = redb_queue(dir.path(), config);
    let m = body(store.as_ref(), "t", b"x");
    let good = queue.submit(vec![session("a"), enqueue("a", 0, &m)]);
    let bad = queue.submit(vec![enqueue("ghost", 0, &m)]);
    let good2 = queue.submit(vec![Mutation::PutRetained(Arc::clone(&m))]);
    assert!(matches!(bad.wait(), Err(StoreError::UnknownSession(_))));
    good.wait().unwrap();
    good2.wait().unwrap();
    assert_eq!(queue.stats().failed_batches, 1);
    assert_eq!(store.usage().queued, 1);
}

#[test]
fn interval_policy_fsyncs_on_a_timer_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = CommitConfig {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(30),
        ..CommitConfig::default()
    };
    let (store, queue) = redb_queue(dir.path(), config);
    queue.submit(vec![session("a")]).wait().unwrap();
    for seq in 0..20 {
        let m = body(store.as_ref(), "t", b"x");
        queue.submit(vec![enqueue("a", seq, &m)]).wait().unwrap();
    }
    let stats = queue.stats();
    assert!(stats.fsyncs < stats.transactions, "{stats:?}");
    // The checkpoint timer fsyncs the tail without new submissions.
    let before = stats.fsyncs;
    std::thread::sleep(Duration::from_millis(120));
    assert!(queue.stats().fsyncs > before, "{:?}", queue.stats());
    queue.shutdown();
    drop(store);
    let reopened = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(reopened.usage().queued, 20);
}

#[test]
fn a_ticket_can_be_awaited_without_a_runtime() {
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let queue = CommitQueue::start(
        Arc::new(fulmar_store::MemoryStore::new()),
        CommitConfig::default(),
    )
    .unwrap();
    let mut ticket = std::pin::pin!(queue.submit(vec![session("a")]));
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match ticket.as_mut().poll(&mut cx) {
            Poll::Ready(result) => break result.unwrap(),
            Poll::Pending => std::thread::park_timeout(Duration::from_secs(1)),
        }
    }
}

#[test]
fn a_full_queue_pushes_back() {
    let store = Arc::new(fulmar_store::MemoryStore::new());
    let config = CommitConfig {
        queue_capacity: 1,
        commit_interval: Duration::from_millis(20),
        ..CommitConfig::default()
    };
    let queue = CommitQueue::start(store, config).unwrap();
    let tickets: Vec<_> = (0..20)
        .map(|i| queue.submit(vec![session(&format!("s{i}"))]))
        .collect();
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    assert!(queue.stats().backpressure_waits > 0, "{:?}", queue.stats());
}

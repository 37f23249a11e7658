//! Commit throughput for 64-byte messages under each fsync policy.
//!
//! `cargo run --release -p fulmar-store --example commit_bench [-- SECONDS [DIR]]`
//!
//! Each of `THREADS` submitters plays a publisher waiting for its PUBACK: it submits one
//! batch (one 64 B message enqueued for one persistent session) and waits for the ticket
//! before the next. A baseline runs the same with no group commit (one fsynced transaction
//! per message, one thread). Not part of the test suite.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fulmar_proto::{Properties, ProtocolVersion, QoS, TopicName};
use fulmar_store::{CommitConfig, CommitQueue, Durability, FsyncPolicy, MessageBody, Mutation};
use fulmar_store::{QueuedDelivery, RedbOptions, RedbStore, SessionRecord, Store};

const THREADS: usize = 32;

fn message(store: &dyn Store, client: &Arc<str>, seq: u64) -> Mutation {
    let body = MessageBody {
        id: store.next_message_id(),
        topic: TopicName::new("bench/topic").unwrap(),
        payload: Bytes::from(vec![0x42; 64]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
        expires_at_ms: None,
    };
    Mutation::Enqueue {
        client_id: Arc::clone(client),
        seq,
        delivery: QueuedDelivery {
            message: Arc::new(body),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        },
    }
}

fn sessions(store: &dyn Store, n: usize) -> Vec<Arc<str>> {
    let ids: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("bench-{i}"))).collect();
    let batch: Vec<Mutation> = ids
        .iter()
        .map(|id| {
            Mutation::PutSession(SessionRecord {
                client_id: Arc::clone(id),
                expiry_interval_secs: u32::MAX,
                last_disconnect_ms: None,
                protocol_version: ProtocolVersion::V5,
                username: None,
            })
        })
        .collect();
    store.apply(&batch, Durability::Immediate).unwrap();
    ids
}

fn grouped(dir: &std::path::Path, fsync: FsyncPolicy, interval: Duration, secs: u64) {
    let store = Arc::new(RedbStore::open(dir, RedbOptions::default()).unwrap());
    let ids = sessions(store.as_ref(), THREADS);
    let config = CommitConfig {
        fsync,
        commit_interval: interval,
        ..CommitConfig::default()
    };
    let queue = CommitQueue::start(Arc::clone(&store) as Arc<dyn Store>, config).unwrap();
    let done = AtomicU64::new(0);
    let latency_us = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for id in &ids {
            let (queue, store, done, latency_us) = (&queue, &store, &done, &latency_us);
            scope.spawn(move || {
                let mut seq = 0;
                while Instant::now() < until {
                    let sent = Instant::now();
                    let batch = vec![message(store.as_ref(), id, seq)];
                    queue.submit(batch).wait().unwrap();
                    latency_us.fetch_add(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                    done.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                    // Keep queues short, as a draining subscriber would.
                    if seq % 64 == 0 {
                        let seqs = 0..=seq - 1;
                        let dequeue = Mutation::Dequeue {
                            client_id: Arc::clone(id),
                            seqs,
                        };
                        queue.submit(vec![dequeue]).wait().unwrap();
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stats = queue.stats();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{:<9} interval {:>4?}: {:>8.0} msg/s  mean ack latency {:>6.2} ms  \
         ({} transactions, {} fsyncs, {:.1} batches/transaction)",
        format!("{fsync:?}"),
        interval,
        n as f64 / elapsed,
        latency_us.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0,
        stats.transactions,
        stats.fsyncs,
        stats.batches as f64 / stats.transactions.max(1) as f64,
    );
}

fn baseline(dir: &std::path::Path, secs: u64) {
    let store = RedbStore::open(dir, RedbOptions::default()).unwrap();
    let ids = sessions(&store, 1);
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while Instant::now() < until {
        let batch = [message(&store, &ids[0], n)];
        store.apply(&batch, Durability::Immediate).unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("baseline (1 thread, fsync per message, no group commit): {rate:>8.0} msg/s");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let root = match args.next() {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("fulmar-store-bench-{}", std::process::id())),
    };
    println!(
        "{THREADS} submitters, 64 B messages, {secs} s per run, store under {}",
        root.display()
    );
    baseline(&root.join("baseline"), secs);
    let runs = [
        (FsyncPolicy::Always, Duration::from_millis(2)),
        (FsyncPolicy::Always, Duration::ZERO),
        (FsyncPolicy::Interval, Duration::from_millis(2)),
        (FsyncPolicy::Interval, Duration::ZERO),
        (FsyncPolicy::Never, Duration::ZERO),
    ];
    for (i, (fsync, interval)) in runs.into_iter().enumerate() {
        grouped(&root.join(format!("run{i}")), fsync, interval, secs);
    }
    let _ = std::fs::remove_dir_all(&root);
}

//! The caller's handle on a submitted batch: wait for it from a thread, or `.await` it from
//! async code (it is a plain `std::future::Future`, so no runtime is tied to the crate).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::StoreError;

#[derive(Default)]
struct Slot {
    result: Option<Result<(), StoreError>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    done: Condvar,
}

/// Completes when the batch it was handed for is committed (or failed).
///
/// "Committed" means what the commit queue's fsync policy says: on stable storage for
/// `FsyncPolicy::Always`, applied but not yet fsynced for the other policies.
#[must_use = "a batch is only known to be committed once its ticket completes"]
pub struct CommitTicket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CommitTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitTicket")
            .field("done", &self.is_done())
            .finish()
    }
}

impl CommitTicket {
    /// A ticket and the completer the writer uses to finish it.
    pub(crate) fn new() -> (CommitTicket, Completer) {
        let shared = Arc::new(Shared::default());
        (
            CommitTicket {
                shared: Arc::clone(&shared),
            },
            Completer {
                shared: Some(shared),
            },
        )
    }

    /// A ticket that is already finished with `result`.
    pub(crate) fn ready(result: Result<(), StoreError>) -> CommitTicket {
        let (ticket, completer) = CommitTicket::new();
        completer.complete(result);
        ticket
    }

    /// A ticket that has already failed with `error` (for callers that could not submit,
    /// e.g. after the queue was shut down).
    pub fn failed(error: StoreError) -> CommitTicket {
        CommitTicket::ready(Err(error))
    }

    /// Whether the outcome is known (`wait` would not block).
    pub fn is_done(&self) -> bool {
        self.shared.slot.lock().result.is_some()
    }

    /// Blocks the calling thread until the batch is committed; returns the outcome.
    /// Do not call it on an async runtime's worker thread: `.await` the ticket there.
    pub fn wait(self) -> Result<(), StoreError> {
        let mut slot = self.shared.slot.lock();
        loop {
            if let Some(result) = slot.result.take() {
                return result;
            }
            self.shared.done.wait(&mut slot);
        }
    }
}

impl Future for CommitTicket {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.shared.slot.lock();
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                match &mut slot.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// The writer's side of a ticket. Dropping it unfinished (the writer died) completes the
/// ticket with [`StoreError::Closed`], so no caller waits forever.
pub(crate) struct Completer {
    shared: Option<Arc<Shared>>,
}

impl Completer {
    /// Publishes the outcome and wakes the waiter.
    pub(crate) fn complete(mut self, result: Result<(), StoreError>) {
        if let Some(shared) = self.shared.take() {
            finish(&shared, result);
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            finish(&shared, Err(StoreError::Closed));
        }
    }
}

fn finish(shared: &Shared, result: Result<(), StoreError>) {
    let waker = {
        let mut slot = shared.slot.lock();
        slot.result = Some(result);
        slot.waker.take()
    };
    shared.done.notify_all();
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn poll_registers_the_waker_and_completion_wakes_it() {
        let (mut ticket, completer) = CommitTicket::new();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut ticket).poll(&mut cx).is_pending());
        completer.complete(Ok(()));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(
            Pin::new(&mut ticket).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn a_dropped_completer_fails_the_ticket() {
        let (ticket, completer) = CommitTicket::new();
        drop(completer);
        assert!(matches!(ticket.wait(), Err(StoreError::Closed)));
    }
}

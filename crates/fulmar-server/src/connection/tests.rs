//! What an idle connection costs: the figure `fulmar bench conn` measures end to end
//! (broker RSS per idle connection), guarded here piece by piece.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::transport::{serve_tcp, ListenerContext};
use crate::{Broker, Config};

/// The task of every connection is as large as its largest state. The idle state (the run
/// loop and the futures it waits on, the session, the IO halves and write queue) is 1,032
/// bytes (November 2026; 2,104 before the session's extras were boxed, the wrappers'
/// argument copies and the kick and shutdown futures went); connecting, the close and the
/// TLS handshake are boxed so that they do not raise it. tokio allocates a task as the
/// future plus 96 bytes of header and trailer, rounded up to 128 bytes (x86-64): up to
/// 1,056 bytes of future fit the 1,152-byte allocation.
#[tokio::test]
async fn a_connection_task_is_sized_by_its_idle_state() {
    let broker = Arc::new(Broker::new(Config::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let peer = stream.local_addr().unwrap();
    let context = Arc::new(ListenerContext {
        allow_anonymous: None,
        tls: None,
    });
    let (_stop, shutdown) = watch::channel(false);
    let task = serve_tcp(context, broker, stream, peer, 1, shutdown);
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1032, "connection task future is {size} bytes");
}

/// Every connected client has a slot in the registry: 56 bytes, 80 with its `Arc` in a
/// glibc chunk (a parked session's timers were 24 more bytes here, in every slot; the
/// owner's connection id and a "removed" flag 16 more, in a 96-byte chunk).
#[test]
fn a_registry_slot_is_56_bytes() {
    assert!(std::mem::size_of::<crate::registry::Slot>() <= 56);
}

/// A dormant connection keeps its boxed `Connection` (with the session in it): 184 bytes, a
/// 192-byte glibc chunk (368 and 384 before the session shared its limits, boxed its persist
/// log, inflight window and replies and dropped its copy of the client id, the hold and the
/// admission guard shrank, and the protocol version was kept by the session alone; 200 and
/// 208 before the admission guard became one pointer).
#[test]
fn a_dormant_connection_keeps_a_small_box() {
    let size = std::mem::size_of::<super::Connection>();
    assert!(size <= 184, "Connection is {size} bytes");
}

//! The connection task: feeds socket bytes, requests and the clock to [`ClientState`] and
//! carries out what it returns; reconnects with backoff when asked to.

use std::collections::HashMap;
use std::time::Instant;

use bytes::BytesMut;
use fulmar_proto::{decode, encode, Disconnect, PacketId, ReasonCode, SubAck, UnsubAck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::client::Command;
use crate::state::{Phase, StateEvent};
use crate::transport::Stream;
use crate::{Backoff, Client, ClientError, ClientOptions, ClientState, Event, EventStream};

/// Bytes reserved in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// One open connection and its buffers.
struct Conn {
    stream: Box<dyn Stream>,
    /// Bytes read but not yet decoded (at most one partial packet after a decode pass).
    rbuf: BytesMut,
    /// Encoded packets not yet written.
    wbuf: BytesMut,
}

/// Who waits for the answer to a request with a packet id.
enum Responder {
    Publish(oneshot::Sender<Result<ReasonCode, ClientError>>),
    Subscribe(oneshot::Sender<Result<SubAck, ClientError>>),
    Unsubscribe(oneshot::Sender<Result<UnsubAck, ClientError>>),
}

/// How a connection ended without error.
enum Exit {
    /// The user asked; DISCONNECT was sent.
    Disconnect(oneshot::Sender<()>),
    /// Every [`Client`] handle was dropped; DISCONNECT was sent.
    Dropped,
}

struct Driver {
    state: ClientState,
    options: ClientOptions,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Requests waiting for an acknowledgement, by packet id.
    responders: HashMap<PacketId, Responder>,
}

/// Makes the first connection and spawns the task that drives it.
pub(crate) async fn start(options: ClientOptions) -> Result<(Client, EventStream), ClientError> {
    let mut state = ClientState::new(options.connect.clone(), Instant::now());
    let conn = establish(&mut state, &options).await?;
    let (tx, commands) = mpsc::channel(options.queue_capacity.max(1));
    let (events, rx) = mpsc::channel(options.event_capacity.max(1));
    let driver = Driver {
        state,
        options,
        commands,
        events,
        responders: HashMap::new(),
    };
    tokio::spawn(driver.run(conn));
    Ok((Client { tx }, EventStream { rx }))
}

/// Opens the transport and completes CONNECT / CONNACK within the connect timeout.
async fn establish(state: &mut ClientState, options: &ClientOptions) -> Result<Conn, ClientError> {
    let mut conn = Conn {
        stream: options
            .endpoint
            .open(options.tls.as_ref(), options.connect_timeout)
            .await?,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::new(),
    };
    state.connect(Instant::now());
    let handshake = async {
        flush(&mut conn, state).await?;
        while state.phase() == Phase::Connecting {
            read_connack(&mut conn, state, options).await?;
        }
        Ok::<_, ClientError>(())
    };
    match tokio::time::timeout(options.connect_timeout, handshake).await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(ClientError::Tls(failure))) => {
            // TLS 1.3: the broker checks our certificate after our side of the handshake is
            // done, so its refusal arrives while we wait for CONNACK. Still a handshake failure.
            state.connection_lost();
            Err(ClientError::TlsHandshake {
                addr: options.endpoint.address(),
                failure,
            })
        }
        Ok(Err(error)) => {
            state.connection_lost();
            Err(error)
        }
        Err(_) => {
            state.connection_lost();
            Err(ClientError::ConnectTimeout {
                addr: options.endpoint.address(),
            })
        }
    }
}

/// Whether bytes received before CONNACK are a TLS record (an alert or handshake record of TLS
/// 1.0 to 1.3: content type 21 or 22, major version 3); a CONNACK starts with 0x20.
fn looks_like_tls(received: &[u8]) -> bool {
    matches!(received, [0x15 | 0x16, 0x03, ..])
}

/// Encodes and writes everything the state wants sent.
async fn flush(conn: &mut Conn, state: &mut ClientState) -> Result<(), ClientError> {
    let now = Instant::now();
    while let Some(packet) = state.poll_transmit(now) {
        encode(&packet, state.version(), &mut conn.wbuf)?;
    }
    if !conn.wbuf.is_empty() {
        conn.stream.write_all(&conn.wbuf).await?;
        // TLS buffers records it could not write at once; flush pushes them out (a no-op on TCP).
        conn.stream.flush().await?;
        conn.wbuf.clear();
    }
    Ok(())
}

/// Reads once while waiting for CONNACK and hands every complete packet to the state. A TLS
/// record on a plain connection means the port wants TLS: say so rather than "invalid packet".
async fn read_connack(
    conn: &mut Conn,
    state: &mut ClientState,
    options: &ClientOptions,
) -> Result<(), ClientError> {
    conn.rbuf.reserve(READ_CHUNK);
    if conn.stream.read_buf(&mut conn.rbuf).await? == 0 {
        return Err(ClientError::ClosedByPeer);
    }
    if options.tls.is_none() && looks_like_tls(&conn.rbuf) {
        return Err(ClientError::TlsExpected {
            addr: options.endpoint.address(),
        });
    }
    decode_all(conn, state)
}

fn decode_all(conn: &mut Conn, state: &mut ClientState) -> Result<(), ClientError> {
    let max = state.options().max_packet_size;
    while let Some(packet) = decode(&mut conn.rbuf, state.version(), max)? {
        state.handle(packet)?;
    }
    Ok(())
}

impl Driver {
    async fn run(mut self, mut conn: Conn) {
        loop {
            let error = match self.serve(&mut conn).await {
                Ok(Exit::Disconnect(done)) => {
                    let _ = conn.stream.shutdown().await;
                    self.emit(Event::Disconnected(None)).await;
                    let _ = done.send(());
                    return;
                }
                Ok(Exit::Dropped) => {
                    let _ = conn.stream.shutdown().await;
                    self.emit(Event::Disconnected(None)).await;
                    return;
                }
                Err(error) => error,
            };
            self.connection_lost();
            let Some(backoff) = self.options.reconnect else {
                self.emit(Event::Disconnected(Some(error))).await;
                return;
            };
            self.emit(Event::ConnectionLost(error)).await;
            match self.reconnect(backoff).await {
                Some(new) => conn = new,
                None => return,
            }
        }
    }

    /// Drives one established connection until it ends.
    async fn serve(&mut self, conn: &mut Conn) -> Result<Exit, ClientError> {
        loop {
            flush(conn, &mut self.state).await?;
            self.dispatch().await;
            let deadline = self.state.poll_timeout();
            let keep_alive = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            conn.rbuf.reserve(READ_CHUNK);
            tokio::select! {
                read = conn.stream.read_buf(&mut conn.rbuf) => {
                    if read? == 0 {
                        return Err(ClientError::ClosedByPeer);
                    }
                    decode_all(conn, &mut self.state)?;
                }
                command = self.commands.recv(), if self.state.can_publish() => {
                    let exit = match command {
                        None => Some(Exit::Dropped),
                        Some(command) => self.apply(command).map(Exit::Disconnect),
                    };
                    if let Some(exit) = exit {
                        if matches!(exit, Exit::Dropped) {
                            self.state.disconnect(Disconnect::default());
                        }
                        flush(conn, &mut self.state).await?;
                        return Ok(exit);
                    }
                }
                () = keep_alive => self.state.handle_timeout(Instant::now())?,
            }
        }
    }

    /// Waits out the backoff (still taking requests) and reconnects; `None` if the client ended.
    async fn reconnect(&mut self, backoff: Backoff) -> Option<Conn> {
        let mut delay = backoff.initial;
        loop {
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    command = self.commands.recv(), if self.state.can_publish() => {
                        let Some(command) = command else {
                            self.emit(Event::Disconnected(None)).await;
                            return None;
                        };
                        if let Some(done) = self.apply(command) {
                            self.emit(Event::Disconnected(None)).await;
                            let _ = done.send(());
                            return None;
                        }
                    }
                }
            }
            match establish(&mut self.state, &self.options).await {
                Ok(conn) => return Some(conn),
                Err(error @ ClientError::Refused(_)) => {
                    // Credentials or id were refused: retrying cannot help.
                    self.emit(Event::Disconnected(Some(error))).await;
                    return None;
                }
                Err(error) => {
                    tracing::debug!("reconnect failed: {error}");
                    delay = (delay * 2).min(backoff.max);
                }
            }
        }
    }

    /// Hands a request to the state; returns the responder of a DISCONNECT request.
    fn apply(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        match command {
            Command::Publish { message, done } => match (self.state.publish(message), done) {
                (Ok(Some(id)), Some(done)) => {
                    self.responders.insert(id, Responder::Publish(done));
                }
                (Ok(None), Some(done)) => {
                    let _ = done.send(Ok(ReasonCode::Success));
                }
                (Err(error), Some(done)) => {
                    let _ = done.send(Err(error));
                }
                (Ok(_), None) => {}
                (Err(error), None) => tracing::warn!("message not published: {error}"),
            },
            Command::Subscribe {
                filters,
                properties,
                done,
            } => match self.state.subscribe(filters, properties) {
                Ok(id) => {
                    self.responders.insert(id, Responder::Subscribe(done));
                }
                Err(error) => {
                    let _ = done.send(Err(error));
                }
            },
            Command::Unsubscribe { filters, done } => match self.state.unsubscribe(filters) {
                Ok(id) => {
                    self.responders.insert(id, Responder::Unsubscribe(done));
                }
                Err(error) => {
                    let _ = done.send(Err(error));
                }
            },
            Command::Disconnect { packet, done } => {
                self.state.disconnect(packet);
                return Some(done);
            }
        }
        None
    }

    /// Delivers the state's events: answers to their requesters, the rest to the stream.
    async fn dispatch(&mut self) {
        while let Some(event) = self.state.poll_event() {
            match event {
                StateEvent::Connected {
                    session_present,
                    properties,
                } => {
                    self.emit(Event::Connected {
                        session_present,
                        properties,
                    })
                    .await;
                }
                StateEvent::Message(publish) => self.emit(Event::Message(publish)).await,
                StateEvent::Published { packet_id, reason } => {
                    if let Some(Responder::Publish(done)) = self.responders.remove(&packet_id) {
                        let _ = done.send(Ok(reason));
                    }
                }
                StateEvent::SubAck(ack) => {
                    if let Some(Responder::Subscribe(done)) = self.responders.remove(&ack.packet_id)
                    {
                        let _ = done.send(Ok(ack));
                    }
                }
                StateEvent::UnsubAck(ack) => {
                    if let Some(Responder::Unsubscribe(done)) =
                        self.responders.remove(&ack.packet_id)
                    {
                        let _ = done.send(Ok(ack));
                    }
                }
            }
        }
    }

    /// Fails the SUBSCRIBE / UNSUBSCRIBE requests the lost connection can no longer answer.
    fn connection_lost(&mut self) {
        for id in self.state.connection_lost() {
            match self.responders.remove(&id) {
                Some(Responder::Subscribe(done)) => {
                    let _ = done.send(Err(ClientError::NotConnected));
                }
                Some(Responder::Unsubscribe(done)) => {
                    let _ = done.send(Err(ClientError::NotConnected));
                }
                Some(Responder::Publish(_)) | None => {}
            }
        }
    }

    /// Sends an event; a dropped [`EventStream`] just means nobody listens.
    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::looks_like_tls;

    #[test]
    fn a_tls_alert_or_handshake_record_is_recognised_before_connack() {
        // A TLS 1.2 decode_error alert, as a TLS listener answers a plain CONNECT.
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        // CONNACK (3.1.1, accepted) and too little to tell.
        assert!(!looks_like_tls(&[0x20, 0x02, 0x00, 0x00]));
        assert!(!looks_like_tls(&[0x15]));
    }
}

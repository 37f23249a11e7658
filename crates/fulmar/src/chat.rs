//! `fulmar chat`: a terminal chat room over MQTT, sharing its wire format with the browser page.
//!
//! # Wire format (keep in step with the browser chat page)
//! - Messages: topic `chat/{room}`, QoS 1, not retained, payload
//!   `{"nick":"..","text":"..","ts":<ms since epoch>,"id":"<unique id>"}`.
//! - Presence: topic `chat/{room}/presence/{nick}`, QoS 1, retained, payload
//!   `{"nick":"..","status":"online"|"offline","ts":<ms>}`. The will is the retained offline
//!   presence; a clean leave publishes it and then sends DISCONNECT.
//! - Client id `chat-{room}-{nick}` with a persistent session (3.1.1 Clean Session 0; 5.0 Clean
//!   Start 0 and Session Expiry 3600 s), so messages sent while reconnecting are kept. With 5.0
//!   the message subscription has No Local; with 3.x our own messages are recognised by nick and
//!   id and not printed.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args};
use fulmar_client::proto::{
    Disconnect, Properties, ProtocolVersion, Publish, QoS, SubAck, SubscriptionOptions,
    TopicFilter, TopicName, Will,
};
use fulmar_client::{Backoff, Client, ClientError, Event, OutgoingMessage, Pending};
use serde::{Deserialize, Serialize};

use crate::broker_args::{self, BrokerArgs, CliError};

/// Session Expiry Interval (5.0) of the chat's persistent session.
const SESSION_EXPIRY_SECS: u32 = 3600;
/// Lines typed while reconnecting that are kept for sending (beyond the in-flight window).
const SEND_QUEUE: usize = 256;
/// How many of our own message ids are remembered to recognise their echo (3.x).
const OWN_IDS: usize = 1024;
/// Bound on publishing the offline presence and disconnecting when leaving.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `fulmar chat`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct ChatArgs {
    /// Room to join (topic `chat/ROOM`).
    #[arg(long, value_name = "NAME")]
    room: String,
    /// Your nickname.
    #[arg(long, value_name = "NAME")]
    nick: String,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// A chat message as carried on `chat/{room}`.
#[derive(Debug, Serialize, Deserialize)]
struct ChatMessage {
    nick: String,
    text: String,
    ts: i64,
    id: String,
}

/// A presence announcement as carried on `chat/{room}/presence/{nick}`.
#[derive(Debug, Serialize, Deserialize)]
struct Presence {
    nick: String,
    status: String,
    ts: i64,
}

/// Runs `fulmar chat` until `/quit`, Ctrl-C or the end of stdin.
pub fn run(args: ChatArgs) -> ExitCode {
    let result = broker_args::runtime().and_then(|rt| rt.block_on(chat(args)));
    broker_args::report("chat", result)
}

/// A room or nick becomes a topic level: non-empty, no `/`, `+`, `#`.
fn check_name(what: &str, name: &str) -> Result<(), CliError> {
    if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
        return Err(CliError::Usage(format!(
            "invalid {what} '{name}': it must be non-empty without '/', '+' or '#'"
        )));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Prints a line and flushes at once (stdout may be a pipe read by a test or a script).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `HH:MM` in local time for a timestamp in ms since the epoch.
fn clock(ts: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
        .unwrap_or_else(|| "--:--".into())
}

async fn chat(args: ChatArgs) -> Result<(), CliError> {
    check_name("room", &args.room)?;
    check_name("nick", &args.nick)?;
    let mut resolved = args.broker.resolve("chat", ProtocolVersion::V5)?;
    let connect = &mut resolved.options.connect;
    if args.broker.id.is_none() {
        connect.client_id = format!("chat-{}-{}", args.room, args.nick);
    }
    connect.clean_start = false;
    if connect.version.is_v5() {
        connect.properties.session_expiry_interval = Some(SESSION_EXPIRY_SECS);
    }
    let room = Room::new(&args.room, &args.nick)?;
    connect.will = Some(Will {
        topic: room.presence_topic.clone(),
        payload: room.presence("offline").into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    resolved.options.reconnect = Some(Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
    });
    resolved.options.queue_capacity = SEND_QUEUE;
    let version = resolved.options.connect.version;
    let (client, mut events) = Client::connect(resolved.options).await?;
    let mut session = Session {
        room,
        client,
        version,
        connected: false,
        joined: false,
        online: BTreeSet::new(),
        own_ids: VecDeque::new(),
        suback: None,
    };
    let mut lines = crate::pub_cmd::stdin_lines();
    loop {
        tokio::select! {
            // The SUBACK first: "joined" is printed before the retained presences it brings.
            biased;
            ack = async { session.suback.as_mut().expect("guarded").await }, if session.suback.is_some() => {
                session.suback = None;
                // Lost before the answer: the next Connected event subscribes again.
                if let Ok(ack) = ack {
                    session.on_suback(ack)?;
                }
            }
            event = events.recv() => match event {
                Some(event) => session.on_event(event).await?,
                None => return Ok(()),
            },
            line = lines.recv() => match line {
                Some(Ok(line)) => {
                    if session.on_line(&line) == Flow::Quit {
                        break;
                    }
                }
                // End of stdin (or unreadable stdin): leave as /quit does.
                Some(Err(_)) | None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    session.leave().await;
    Ok(())
}

/// Topics and payloads of one room for one nick.
struct Room {
    name: String,
    nick: String,
    messages: TopicName,
    presence_topic: TopicName,
    presence_prefix: String,
}

impl Room {
    fn new(name: &str, nick: &str) -> Result<Self, CliError> {
        let topic = |t: String| {
            TopicName::new(t.as_str())
                .map_err(|e| CliError::Usage(format!("invalid topic '{t}': {e}")))
        };
        Ok(Self {
            name: name.to_owned(),
            nick: nick.to_owned(),
            messages: topic(format!("chat/{name}"))?,
            presence_topic: topic(format!("chat/{name}/presence/{nick}"))?,
            presence_prefix: format!("chat/{name}/presence/"),
        })
    }

    fn presence(&self, status: &str) -> String {
        let presence = Presence {
            nick: self.nick.clone(),
            status: status.to_owned(),
            ts: now_ms(),
        };
        serde_json::to_string(&presence).unwrap_or_default()
    }

    fn presence_message(&self, status: &str) -> OutgoingMessage {
        OutgoingMessage::new(
            self.presence_topic.clone(),
            self.presence(status),
            QoS::AtLeastOnce,
            true,
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The state of one chat participant.
struct Session {
    room: Room,
    client: Client,
    version: ProtocolVersion,
    /// Between CONNACK and a loss.
    connected: bool,
    /// The first subscription was acknowledged ("joined" printed).
    joined: bool,
    /// Other members whose latest presence is online.
    online: BTreeSet<String>,
    /// Ids of our recent messages, to drop their echo under 3.x (bounded by [`OWN_IDS`]).
    own_ids: VecDeque<String>,
    /// The SUBSCRIBE in progress.
    suback: Option<Pending<SubAck>>,
}

impl Session {
    async fn on_event(&mut self, event: Event) -> Result<(), CliError> {
        match event {
            Event::Connected {
                session_present, ..
            } => {
                self.connected = true;
                if session_present && self.joined {
                    say("* reconnected");
                    self.announce();
                } else {
                    // A new session (first join, or the broker lost ours): subscribe again.
                    self.subscribe().await?;
                }
            }
            Event::Message(publish) => self.on_message(&publish),
            Event::ConnectionLost(error) => {
                self.connected = false;
                say(&format!("* connection lost, reconnecting… ({error})"));
            }
            Event::Disconnected(Some(error)) => return Err(error.into()),
            Event::Disconnected(None) => {}
        }
        Ok(())
    }

    async fn subscribe(&mut self) -> Result<(), ClientError> {
        let messages = TopicFilter::new(self.room.messages.as_str())
            .map_err(|_| ClientError::Protocol("topic"))?;
        let presence = TopicFilter::new(format!("{}+", self.room.presence_prefix))
            .map_err(|_| ClientError::Protocol("topic"))?;
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        };
        let filters = vec![
            (
                messages,
                SubscriptionOptions {
                    no_local: true,
                    ..options
                },
            ),
            (presence, options),
        ];
        self.suback = Some(
            self.client
                .subscribe(filters, Properties::default())
                .await?,
        );
        Ok(())
    }

    fn on_suback(&mut self, ack: SubAck) -> Result<(), CliError> {
        if ack.reasons.iter().any(|r| r.is_error()) {
            return Err(CliError::Refused(format!(
                "the broker refused the subscriptions to room '{}'",
                self.room.name
            )));
        }
        if self.joined {
            say("* reconnected");
        } else {
            self.joined = true;
            say(&format!(
                "* joined room {} as {}",
                self.room.name, self.room.nick
            ));
        }
        self.announce();
        Ok(())
    }

    /// Publishes our retained online presence.
    fn announce(&self) {
        if let Err(error) = self
            .client
            .try_publish(self.room.presence_message("online"))
        {
            say(&format!("* could not announce presence: {error}"));
        }
    }

    fn on_message(&mut self, publish: &Publish) {
        let topic = publish.topic.as_str();
        if topic == self.room.messages.as_str() {
            self.print_chat(&publish.payload);
        } else if let Some(nick) = topic.strip_prefix(&self.room.presence_prefix) {
            self.on_presence(nick, &publish.payload);
        }
    }

    fn print_chat(&mut self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<ChatMessage>(payload) else {
            say(&format!(
                "[{}] <?> {}",
                clock(now_ms()),
                String::from_utf8_lossy(payload)
            ));
            return;
        };
        if message.nick == self.room.nick {
            if let Some(index) = self.own_ids.iter().position(|id| *id == message.id) {
                self.own_ids.remove(index);
                return; // our own message echoed (3.x has no No Local)
            }
        }
        say(&format!(
            "[{}] <{}> {}",
            clock(message.ts),
            message.nick,
            message.text
        ));
    }

    fn on_presence(&mut self, nick: &str, payload: &[u8]) {
        if nick == self.room.nick {
            return;
        }
        // An empty payload clears a retained presence: treat it as offline.
        let online =
            serde_json::from_slice::<Presence>(payload).is_ok_and(|p| p.status == "online");
        if online && self.online.insert(nick.to_owned()) {
            say(&format!("* {nick} joined"));
        } else if !online && self.online.remove(nick) {
            say(&format!("* {nick} left"));
        }
    }

    fn on_line(&mut self, line: &str) -> Flow {
        let text = line.trim();
        match text {
            "" => {}
            "/quit" => return Flow::Quit,
            "/who" => {
                let mut members: Vec<&str> = self.online.iter().map(String::as_str).collect();
                members.push(&self.room.nick);
                members.sort_unstable();
                say(&format!("* online: {}", members.join(", ")));
            }
            command if command.starts_with('/') => {
                say(&format!("* unknown command {command} (try /who or /quit)"));
            }
            text => self.send(text),
        }
        Flow::Continue
    }

    fn send(&mut self, text: &str) {
        let id = format!("{:016x}", broker_args::random_u64());
        let message = ChatMessage {
            nick: self.room.nick.clone(),
            text: text.to_owned(),
            ts: now_ms(),
            id: id.clone(),
        };
        let payload = serde_json::to_string(&message).unwrap_or_default();
        let outgoing =
            OutgoingMessage::new(self.room.messages.clone(), payload, QoS::AtLeastOnce, false);
        match self.client.try_publish(outgoing) {
            Ok(()) => {
                if !self.version.is_v5() {
                    if self.own_ids.len() >= OWN_IDS {
                        self.own_ids.pop_front();
                    }
                    self.own_ids.push_back(id);
                }
            }
            Err(error) => say(&format!("* message not sent: {error}")),
        }
    }

    /// Publishes the offline presence and disconnects, each bounded by [`LEAVE_TIMEOUT`].
    async fn leave(self) {
        if self.connected {
            let offline = async {
                let pending = self
                    .client
                    .publish(self.room.presence_message("offline"))
                    .await?;
                pending.await
            };
            let _ = tokio::time::timeout(LEAVE_TIMEOUT, offline).await;
        }
        let mut packet = Disconnect::default();
        if self.version.is_v5() {
            // Leaving on purpose: the broker need not keep our session (5.0 section 3.14.2.2.2).
            packet.properties.session_expiry_interval = Some(0);
        }
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, self.client.disconnect(packet)).await;
    }
}

//! `fulmar pub`: publish one message, or one per line of stdin, like mosquitto_pub.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{ArgAction, ArgGroup, Args};
use fulmar_client::proto::{Disconnect, ProtocolVersion, QoS, ReasonCode, TopicName};
use fulmar_client::{
    describe_reason, Client, ClientError, Event, EventStream, OutgoingMessage, Pending,
};
use tokio::sync::mpsc;

use crate::broker_args::{self, BrokerArgs, CliError, SessionArgs};

/// Most line-mode messages whose acknowledgement is awaited at once.
const LINE_WINDOW: usize = 64;

/// Options of `fulmar pub` (mosquitto_pub's spellings; `-h` is the host, `--help` the help).
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    group(ArgGroup::new("source").required(true).args(["message", "file", "stdin_file", "stdin_line", "null_message"]))
)]
pub struct PubArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    session: SessionArgs,
    /// Topic to publish to (no wildcards).
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    topic: Option<String>,
    /// The message.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Read the whole of stdin as one message.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// Send each line of stdin as a message (blank lines are skipped).
    #[arg(short = 'l', long = "stdin-line")]
    stdin_line: bool,
    /// Send an empty (null) message.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// QoS 0, 1 or 2.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value = "0", value_parser = broker_args::parse_qos)]
    qos: QoS,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Give up after SECS seconds (connecting and acknowledgements included); exit code 5.
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    timeout: Option<u64>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Runs `fulmar pub`.
pub fn run(args: PubArgs) -> ExitCode {
    let result = broker_args::runtime().and_then(|rt| rt.block_on(publish(args)));
    broker_args::report("pub", result)
}

async fn publish(args: PubArgs) -> Result<(), CliError> {
    let mut resolved = args.broker.resolve("pub", ProtocolVersion::V3_1_1)?;
    args.session
        .apply(&args.broker, &mut resolved.options.connect)?;
    let topic = args
        .topic
        .clone()
        .or(resolved.url_topic.take())
        .ok_or_else(|| CliError::Usage("no topic given (-t TOPIC or --url .../TOPIC)".into()))?;
    let topic = TopicName::new(topic.as_str())
        .map_err(|e| CliError::Usage(format!("invalid topic '{topic}': {e}")))?;
    let payload = read_payload(&args)?;
    let work = async {
        let (client, events) = Client::connect(resolved.options).await?;
        let cause = tokio::spawn(last_error(events));
        let message =
            |payload: Bytes| OutgoingMessage::new(topic.clone(), payload, args.qos, args.retain);
        let sent = match payload {
            Some(payload) => {
                async {
                    let done = client.publish(message(payload)).await?;
                    check_reason(done.await?)
                }
                .await
            }
            None => publish_lines(&client, message).await,
        };
        match sent {
            // The connection task ended: report why it did.
            Err(CliError::Client(ClientError::Closed)) => {
                let cause = cause.await.ok().flatten().unwrap_or(ClientError::Closed);
                Err(cause.into())
            }
            Err(error) => Err(error),
            Ok(()) => Ok(client.disconnect(Disconnect::default()).await?),
        }
    };
    match broker_args::timeout_of(args.timeout) {
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(CliError::Timeout(format!(
                "timed out after {} s (-W)",
                limit.as_secs()
            )))
        }),
        None => work.await,
    }
}

/// Reads the events (a publisher expects none but must not let them pile up) and returns the
/// error that ended the connection, if any.
async fn last_error(mut events: EventStream) -> Option<ClientError> {
    let mut last = None;
    while let Some(event) = events.recv().await {
        if let Event::ConnectionLost(error) | Event::Disconnected(Some(error)) = event {
            last = Some(error);
        }
    }
    last
}

/// The single message's payload; `None` in line mode.
fn read_payload(args: &PubArgs) -> Result<Option<Bytes>, CliError> {
    if let Some(text) = &args.message {
        return Ok(Some(Bytes::from(text.clone())));
    }
    if let Some(path) = &args.file {
        return std::fs::read(path)
            .map(|data| Some(Bytes::from(data)))
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())));
    }
    if args.stdin_file {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        return Ok(Some(Bytes::from(data)));
    }
    if args.null_message {
        return Ok(Some(Bytes::new()));
    }
    Ok(None)
}

/// A 5.0 PUBACK / PUBREC failure is the broker refusing the message.
fn check_reason(reason: ReasonCode) -> Result<(), CliError> {
    if reason.is_error() {
        return Err(CliError::Refused(format!(
            "the broker rejected the message: {}",
            describe_reason(reason)
        )));
    }
    Ok(())
}

/// Line mode: one message per non-blank stdin line until EOF, at most [`LINE_WINDOW`] unacknowledged.
async fn publish_lines(
    client: &Client,
    message: impl Fn(Bytes) -> OutgoingMessage,
) -> Result<(), CliError> {
    let mut lines = stdin_lines();
    let mut window: VecDeque<Pending<ReasonCode>> = VecDeque::new();
    while let Some(line) = lines.recv().await {
        let line = line.map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        if line.is_empty() {
            continue;
        }
        window.push_back(client.publish(message(Bytes::from(line))).await?);
        if window.len() >= LINE_WINDOW {
            if let Some(oldest) = window.pop_front() {
                check_reason(oldest.await?)?;
            }
        }
    }
    for pending in window {
        check_reason(pending.await?)?;
    }
    Ok(())
}

/// Lines of stdin (without their `\n` / `\r\n`), read on a plain thread: a blocking read must not
/// hold up the runtime's shutdown. Bounded: the reader waits while the channel is full.
pub fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let line = line.map(|mut l| {
                if l.ends_with('\r') {
                    l.pop();
                }
                l
            });
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

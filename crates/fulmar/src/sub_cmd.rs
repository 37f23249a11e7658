//! `fulmar sub`: subscribe and print messages, like mosquitto_sub (`-v`, `-C`, `-W`, `-R`), or
//! one JSON object per message with `--json`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{ArgAction, Args};
use fulmar_client::proto::{
    Disconnect, Properties, ProtocolVersion, Publish, QoS, SubAck, SubscriptionOptions, TopicFilter,
};
use fulmar_client::{describe_reason, Client, Event, EventStream};
use serde_json::{json, Map, Value};

use crate::broker_args::{self, BrokerArgs, CliError, SessionArgs};

/// Options of `fulmar sub` (mosquitto_sub's spellings; `-h` is the host, `--help` the help).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    session: SessionArgs,
    /// Topic filter to subscribe to; repeatable.
    #[arg(short = 't', long = "topic", value_name = "FILTER")]
    topics: Vec<String>,
    /// Maximum QoS to receive: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value = "0", value_parser = broker_args::parse_qos)]
    qos: QoS,
    /// Exit (code 0) after COUNT messages.
    #[arg(short = 'C', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Exit with code 5 if the -C count (or, without -C, any message) has not arrived SECS
    /// seconds after connecting; without -C, end successfully after SECS.
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    timeout: Option<u64>,
    /// Print "TOPIC PAYLOAD".
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Print one JSON object per message: topic, qos, retain, payload (UTF-8 text, or base64
    /// with "encoding":"base64"), and properties with MQTT 5.
    #[arg(long = "json", conflicts_with = "verbose")]
    json: bool,
    /// Do not print retained messages sent at subscription time.
    #[arg(short = 'R', long = "no-retained")]
    no_retained: bool,
    /// Do not print a newline after each message.
    #[arg(short = 'N', long = "no-newline")]
    no_newline: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Runs `fulmar sub`.
pub fn run(args: SubArgs) -> ExitCode {
    let result = broker_args::runtime().and_then(|rt| rt.block_on(subscribe(args)));
    broker_args::report("sub", result)
}

async fn subscribe(args: SubArgs) -> Result<(), CliError> {
    let mut resolved = args.broker.resolve("sub", ProtocolVersion::V3_1_1)?;
    args.session
        .apply(&args.broker, &mut resolved.options.connect)?;
    let mut topics = args.topics.clone();
    topics.extend(resolved.url_topic.take());
    if topics.is_empty() {
        return Err(CliError::Usage(
            "no topic given (-t FILTER or --url .../FILTER)".into(),
        ));
    }
    let options = SubscriptionOptions {
        qos: args.qos,
        ..SubscriptionOptions::default()
    };
    let filters = topics
        .iter()
        .map(|t| {
            TopicFilter::new(t.as_str())
                .map(|f| (f, options))
                .map_err(|e| CliError::Usage(format!("invalid topic filter '{t}': {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let version = resolved.options.connect.version;
    let (client, events) = Client::connect(resolved.options).await?;
    let suback = client
        .subscribe(filters.clone(), Properties::default())
        .await?;
    let receive = receive(&args, version, events, suback, &filters);
    let outcome = match broker_args::timeout_of(args.timeout) {
        Some(limit) => tokio::select! {
            outcome = receive => outcome,
            () = tokio::time::sleep(limit) => timed_out(&args, limit),
        },
        None => tokio::select! {
            outcome = receive => outcome,
            _ = tokio::signal::ctrl_c() => Ok(()),
        },
    };
    // Best effort: the broker may already be gone when the outcome is an error.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client.disconnect(Disconnect::default()),
    )
    .await;
    outcome
}

/// `-W` expired: a failure when messages were expected.
fn timed_out(args: &SubArgs, limit: Duration) -> Result<(), CliError> {
    match args.count {
        Some(count) => Err(CliError::Timeout(format!(
            "timed out after {} s (-W) before {count} message(s) arrived",
            limit.as_secs()
        ))),
        None => Ok(()),
    }
}

/// Prints messages until `-C` is reached or the client ends.
async fn receive(
    args: &SubArgs,
    version: ProtocolVersion,
    mut events: EventStream,
    suback: fulmar_client::Pending<SubAck>,
    filters: &[(TopicFilter, SubscriptionOptions)],
) -> Result<(), CliError> {
    let mut suback = Some(suback);
    let mut received = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            ack = async { suback.as_mut().expect("guarded").await }, if suback.is_some() => {
                suback = None;
                check_suback(&ack?, filters)?;
                continue;
            }
            event = events.recv() => event,
        };
        match event {
            Some(Event::Message(publish)) => {
                if args.no_retained && publish.retain {
                    continue;
                }
                print_message(args, version, &publish)?;
                received += 1;
                if args.count.is_some_and(|count| received >= count) {
                    return Ok(());
                }
            }
            Some(Event::Connected { .. }) => {}
            Some(Event::ConnectionLost(error) | Event::Disconnected(Some(error))) => {
                return Err(error.into())
            }
            Some(Event::Disconnected(None)) | None => return Ok(()),
        }
    }
}

/// Warns about refused filters; fails (exit 4) if all were refused, as mosquitto_sub does.
fn check_suback(
    ack: &SubAck,
    filters: &[(TopicFilter, SubscriptionOptions)],
) -> Result<(), CliError> {
    let mut refused = 0;
    for ((filter, _), reason) in filters.iter().zip(&ack.reasons) {
        if reason.is_error() {
            refused += 1;
            eprintln!(
                "fulmar sub: warning: subscription to '{filter}' refused: {}",
                describe_reason(*reason)
            );
        }
    }
    if refused > 0 && refused == filters.len() {
        return Err(CliError::Refused("every subscription was refused".into()));
    }
    Ok(())
}

fn print_message(
    args: &SubArgs,
    version: ProtocolVersion,
    publish: &Publish,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let line = json_message(publish, version).to_string();
        out.write_all(line.as_bytes())
    } else if args.verbose {
        out.write_all(publish.topic.as_str().as_bytes())
            .and_then(|()| out.write_all(b" "))
            .and_then(|()| out.write_all(&publish.payload))
    } else {
        out.write_all(&publish.payload)
    };
    written
        .and_then(|()| {
            if args.no_newline {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush())
        // stdout closed (e.g. piped into `head`): nothing left to do.
        .map_err(|e| CliError::Usage(format!("cannot write to stdout: {e}")))
}

/// The `--json` object for one message.
pub fn json_message(publish: &Publish, version: ProtocolVersion) -> Value {
    let mut object = Map::new();
    object.insert("topic".into(), json!(publish.topic.as_str()));
    object.insert("qos".into(), json!(publish.qos.as_u8()));
    object.insert("retain".into(), json!(publish.retain));
    match std::str::from_utf8(&publish.payload) {
        Ok(text) => {
            object.insert("payload".into(), json!(text));
        }
        Err(_) => {
            object.insert("payload".into(), json!(base64_of(&publish.payload)));
            object.insert("encoding".into(), json!("base64"));
        }
    }
    if version.is_v5() {
        object.insert("properties".into(), json_properties(&publish.properties));
    }
    Value::Object(object)
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The PUBLISH properties that are present, named as in the specification (snake case).
fn json_properties(props: &Properties) -> Value {
    let mut object = Map::new();
    let mut put = |name: &str, value: Value| {
        object.insert(name.to_owned(), value);
    };
    if let Some(v) = props.payload_format_indicator {
        put("payload_format_indicator", json!(v));
    }
    if let Some(v) = props.message_expiry_interval {
        put("message_expiry_interval", json!(v));
    }
    if let Some(v) = &props.content_type {
        put("content_type", json!(v));
    }
    if let Some(v) = &props.response_topic {
        put("response_topic", json!(v.as_str()));
    }
    if let Some(v) = &props.correlation_data {
        put("correlation_data", json!(base64_of(v)));
    }
    if !props.subscription_identifiers.is_empty() {
        put(
            "subscription_identifiers",
            json!(props.subscription_identifiers),
        );
    }
    if !props.user_properties.is_empty() {
        // Names may repeat, so pairs rather than an object.
        put("user_properties", json!(props.user_properties));
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulmar_client::proto::TopicName;

    fn publish(payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: TopicName::new("a/b").expect("topic"),
            packet_id: fulmar_client::proto::PacketId::new(1),
            properties: Properties::default(),
            payload: bytes::Bytes::from_static(payload),
        }
    }

    #[test]
    fn json_text_and_binary_payloads() {
        let text = json_message(&publish(b"hi"), ProtocolVersion::V3_1_1);
        assert_eq!(
            text,
            json!({"topic": "a/b", "qos": 1, "retain": true, "payload": "hi"})
        );
        let mut binary = publish(b"\xff\x00");
        binary.properties.user_properties = vec![("k".into(), "v".into())];
        let value = json_message(&binary, ProtocolVersion::V5);
        assert_eq!(value["payload"], json!("/wA="));
        assert_eq!(value["encoding"], json!("base64"));
        assert_eq!(
            value["properties"],
            json!({"user_properties": [["k", "v"]]})
        );
    }
}

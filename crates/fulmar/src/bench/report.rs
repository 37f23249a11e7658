//! The result of a run: the summary table and the `--json` object.
//!
//! # JSON fields (one object, all numbers)
//! - `scenario`, `broker` (`host:port`), `transport` (`"tcp"`, `"tls"`, `"ws"`, `"wss"`),
//!   `protocol` (`"3.1.1"`/`"5.0"`), `qos`, `payload_bytes`, `publishers`, `subscribers`,
//!   `subscriptions` (filters held), `connections`, `threads`, `rate_per_publisher`
//!   (0 = unlimited), `tcp_notsent_lowat` (bytes, 0 = the kernel's default), `warmup_s`;
//! - `window_s`: length of the measured window (duration mode: `--duration`; count mode: from
//!   the window start to the last delivery);
//! - `connect`: `{clients, seconds, per_sec, generator_cpu_pct, generator_saturated,
//!   broker_cpu_us_per_client}` — the setup phase (CONNECT+CONNACK, SUBSCRIBE): this process's
//!   CPU during it (% of `threads` cores; saturated at ≥ 90 %, when `per_sec` is the
//!   generator's limit, not the broker's) and, with `--broker-pid`, the broker's CPU during it
//!   per client (`null` without);
//! - `published` (all publishes sent), `publish_per_sec` (sent during the run, per second of
//!   run), `expected` (deliveries the subscriptions call for, `null` if the publishers are not
//!   ours), `delivered` (PUBLISH packets received, duplicates included), `delivered_in_window`,
//!   `msgs_per_sec` and `bytes_per_sec` (in the window, payload bytes);
//! - `latency_us`: `{p50, p90, p99, p999, max, mean, samples}` over deliveries in the window;
//! - `lost` (expected − distinct received; `sub`: gaps only), `duplicated`, `out_of_order`,
//!   `foreign` (payloads without our header), `disconnects`;
//! - `generator`: `{cpu_pct, saturated}` — this process's CPU over the window as a percentage of
//!   `threads` cores; saturated at ≥ 90 %, when the figures may be the generator's, not the
//!   broker's;
//! - `broker_stats`: `null` without `--broker-pid`, else `{pid, cpu_s, cpu_us_per_msg, per,
//!   rss_start_bytes, rss_end_bytes, rss_per_connection_bytes}`; `per` says whether the
//!   divisor is `"delivered"` (deliveries after the window start, drain included, as the CPU
//!   time is) or `"published"` (scenario `pub`); `rss_per_connection_bytes` only for `conn`;
//! - `errors`: strings; non-empty means the run failed the accounting (QoS 1/2 loss, QoS 2
//!   duplicates, lost connections) and the exit code is 2.

use std::fmt::Write as _;

use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Number of deliveries measured.
    pub samples: u64,
}

impl Latency {
    /// Percentiles of a nanosecond histogram.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            samples: h.len(),
        }
    }
}

/// The setup phase.
#[derive(Debug, Clone, Serialize)]
pub struct Connect {
    /// Clients connected.
    pub clients: usize,
    /// Time to connect (and subscribe) them all.
    pub seconds: f64,
    /// `clients / seconds`.
    pub per_sec: f64,
    /// This process's CPU during setup, in % of `threads` cores.
    pub generator_cpu_pct: f64,
    /// `generator_cpu_pct` ≥ 90: `per_sec` may be the generator's limit.
    pub generator_saturated: bool,
    /// The broker's CPU during setup per client, in microseconds (with `--broker-pid`).
    pub broker_cpu_us_per_client: Option<f64>,
}

/// This process's CPU use.
#[derive(Debug, Clone, Serialize)]
pub struct Generator {
    /// CPU time over the window, in % of `threads` cores.
    pub cpu_pct: f64,
    /// `cpu_pct` ≥ 90: the generator may be what limits the figures.
    pub saturated: bool,
}

/// The broker's CPU and memory, from `/proc/<pid>`.
#[derive(Debug, Clone, Serialize)]
pub struct Broker {
    /// Process id.
    pub pid: u32,
    /// CPU seconds (user + system) from the window start to the end of the drain.
    pub cpu_s: f64,
    /// CPU microseconds per message (see `per`).
    pub cpu_us_per_msg: Option<f64>,
    /// `"delivered"` or `"published"`: what `cpu_us_per_msg` divides by.
    pub per: &'static str,
    /// VmRSS at the start (for `conn`: before connecting).
    pub rss_start_bytes: u64,
    /// VmRSS at the end.
    pub rss_end_bytes: u64,
    /// `conn`: RSS growth divided by the connections held.
    pub rss_per_connection_bytes: Option<f64>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the fields are documented in the module docs, as the JSON schema
pub struct Report {
    pub scenario: String,
    pub broker: String,
    pub transport: &'static str,
    pub protocol: &'static str,
    pub qos: u8,
    pub payload_bytes: u32,
    pub publishers: usize,
    pub subscribers: usize,
    pub subscriptions: usize,
    pub connections: usize,
    pub threads: u16,
    pub rate_per_publisher: u64,
    /// `TCP_NOTSENT_LOWAT` of the generator's connections (0 = the kernel's default).
    pub tcp_notsent_lowat: u32,
    pub warmup_s: f64,
    pub window_s: f64,
    pub connect: Connect,
    pub published: u64,
    pub publish_per_sec: f64,
    pub expected: Option<u64>,
    pub delivered: u64,
    pub delivered_in_window: u64,
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
    pub latency_us: Latency,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub foreign: u64,
    pub disconnects: u64,
    pub generator: Generator,
    #[serde(rename = "broker_stats")]
    pub broker_stats: Option<Broker>,
    pub errors: Vec<String>,
}

/// `1234567.8` as `1.23M`, for the table.
pub fn si(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

impl Report {
    /// The `--json` object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"errors\":[\"json: {e}\"]}}"))
    }

    /// The setup phase: its rate, and what it cost the generator and the broker.
    fn connect_line(&self) -> String {
        let c = &self.connect;
        let mut line = format!(
            "{} clients in {:.3} s = {}/s; generator {:.0} % of {} thread(s)",
            c.clients,
            c.seconds,
            si(c.per_sec),
            c.generator_cpu_pct,
            self.threads
        );
        if let Some(each) = c.broker_cpu_us_per_client {
            let _ = write!(line, ", broker {each:.1} µs CPU per client");
        }
        if c.generator_saturated {
            line.push_str("  SATURATED: the rate may be the generator's limit");
        }
        line
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "fulmar bench {} → {} ({}): MQTT {}, QoS {}, {} B payload; {} publisher(s), {} subscriber(s), {} filter(s), {} connection(s)",
            self.scenario, self.broker, self.transport, self.protocol, self.qos, self.payload_bytes,
            self.publishers, self.subscribers, self.subscriptions, self.connections
        );
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<18} {v}");
        };
        row(&mut t, "connect", self.connect_line());
        if self.scenario != "conn" {
            row(
                &mut t,
                "window",
                format!(
                    "{:.2} s after {:.1} s warm-up",
                    self.window_s, self.warmup_s
                ),
            );
            row(
                &mut t,
                "published",
                format!(
                    "{} msgs, {} msgs/s",
                    self.published,
                    si(self.publish_per_sec)
                ),
            );
            let expected = self.expected.map_or("?".to_owned(), |e| e.to_string());
            row(
                &mut t,
                "delivered",
                format!(
                    "{} msgs (expected {expected}); in window {} msgs/s, {}B/s",
                    self.delivered,
                    si(self.msgs_per_sec),
                    si(self.bytes_per_sec)
                ),
            );
            let l = &self.latency_us;
            row(
                &mut t,
                "latency µs",
                format!(
                    "p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  ({} samples)",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.samples
                ),
            );
            row(
                &mut t,
                "lost/dup/reorder",
                format!(
                    "{} / {} / {}  (foreign {}, disconnects {})",
                    self.lost, self.duplicated, self.out_of_order, self.foreign, self.disconnects
                ),
            );
        }
        if let Some(b) = &self.broker_stats {
            let per = b
                .cpu_us_per_msg
                .map_or("-".to_owned(), |v| format!("{v:.3}"));
            let mut line = format!(
                "pid {}: {:.2} s CPU, {per} µs per {} msg; RSS {} → {}B",
                b.pid,
                b.cpu_s,
                b.per,
                si(b.rss_start_bytes as f64),
                si(b.rss_end_bytes as f64)
            );
            if let Some(each) = b.rss_per_connection_bytes {
                let _ = write!(line, " ({each:.0} B per connection)");
            }
            row(&mut t, "broker", line);
        }
        let g = &self.generator;
        let note = if g.saturated {
            "  SATURATED: figures may be the generator's limit"
        } else {
            ""
        };
        row(
            &mut t,
            "generator",
            format!("{:.0} % of {} thread(s){note}", g.cpu_pct, self.threads),
        );
        for e in &self.errors {
            row(&mut t, "ERROR", e.clone());
        }
        t
    }
}

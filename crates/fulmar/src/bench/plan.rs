//! What each scenario means: the clients it creates, their topics and filters, and which
//! publishers each subscriber should hear from (for loss accounting).

use super::{BenchArgs, Scenario};

/// One client of the benchmark.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// MQTT client identifier (unique per run).
    pub client_id: String,
    /// Publishes, if this client is a publisher.
    pub publish: Option<PublisherSpec>,
    /// Filters to subscribe to (empty: not a subscriber).
    pub filters: Vec<String>,
}

/// The publishing side of a client.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// Global publisher index, carried in every payload.
    pub index: u32,
    /// Topic it publishes to.
    pub topic: String,
}

/// The whole run: clients in setup order (subscribers first) and the delivery expectations.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every client.
    pub clients: Vec<ClientSpec>,
    /// Number of publishers (indices `0..publishers`).
    pub publishers: usize,
    /// Number of subscribing clients.
    pub subscribers: usize,
    /// Total filters held by all subscribers.
    pub subscriptions: usize,
    /// For each publisher, how many subscribers receive its messages (each message should be
    /// delivered that many times).
    pub receivers: Vec<u64>,
    /// Whether the publishers are ours, so that tail loss can be known (false for `sub`).
    pub publishers_known: bool,
}

/// `pattern` with `%i` replaced by `index`.
pub fn expand(pattern: &str, index: usize) -> String {
    pattern.replace("%i", &index.to_string())
}

impl Plan {
    /// Builds the plan for `args`; `run_id` keeps client ids unique across runs.
    pub fn build(args: &BenchArgs, run_id: &str) -> anyhow::Result<Self> {
        let topic = |default: &str| args.topic.clone().unwrap_or_else(|| default.to_owned());
        let mut pubs: Vec<String> = Vec::new();
        let mut subs: Vec<Vec<String>> = Vec::new();
        let mut idle = 0;
        match args.scenario {
            Scenario::Conn => idle = args.connections.unwrap_or(1000),
            Scenario::Pub => {
                let pattern = topic("bench/pub/%i");
                pubs = (0..args.publishers.unwrap_or(1))
                    .map(|i| expand(&pattern, i))
                    .collect();
            }
            Scenario::Sub => {
                let filter = topic("bench/pub/+");
                subs = vec![vec![filter]; args.subscribers.unwrap_or(1)];
            }
            Scenario::Fanin => {
                let pattern = topic("bench/fanin/%i");
                pubs = (0..args.publishers.unwrap_or(16))
                    .map(|i| expand(&pattern, i))
                    .collect();
                subs = vec![vec![pattern.replace("%i", "+")]];
            }
            Scenario::Fanout => {
                let name = expand(&topic("bench/fanout"), 0);
                pubs = vec![name.clone()];
                subs = vec![vec![name]; args.subscribers.unwrap_or(100)];
            }
            Scenario::Pairs | Scenario::Latency => {
                let default_pairs = if args.scenario == Scenario::Pairs {
                    50
                } else {
                    1
                };
                let pattern = topic("bench/pairs/%i");
                let n = args.pairs.unwrap_or(default_pairs);
                pubs = (0..n).map(|i| expand(&pattern, i)).collect();
                subs = pubs.iter().map(|t| vec![t.clone()]).collect();
            }
            Scenario::Subs => {
                let p = args.publishers.unwrap_or(10).max(1);
                let pattern = topic("bench/subs/%i/data");
                pubs = (0..p).map(|i| expand(&pattern, i)).collect();
                subs = (0..args.subscribers.unwrap_or(100))
                    .map(|j| subs_filters(&pattern, j, p, args.filters.max(1)))
                    .collect();
            }
        }
        Self::assemble(pubs, subs, idle, run_id, args.scenario != Scenario::Sub)
    }

    fn assemble(
        pubs: Vec<String>,
        subs: Vec<Vec<String>>,
        idle: usize,
        run_id: &str,
        publishers_known: bool,
    ) -> anyhow::Result<Self> {
        let mut receivers = vec![0u64; pubs.len()];
        for filters in &subs {
            for (count, topic) in receivers.iter_mut().zip(&pubs) {
                if filters
                    .iter()
                    .any(|f| fulmar_proto::topic_matches(f, topic))
                {
                    *count += 1;
                }
            }
        }
        let subscriptions = subs.iter().map(Vec::len).sum();
        let subscribers = subs.len();
        let mut clients = Vec::with_capacity(subs.len() + pubs.len() + idle);
        clients.extend(subs.into_iter().enumerate().map(|(j, filters)| ClientSpec {
            client_id: format!("fb-{run_id}-s{j}"),
            publish: None,
            filters,
        }));
        for (i, topic) in pubs.iter().enumerate() {
            clients.push(ClientSpec {
                client_id: format!("fb-{run_id}-p{i}"),
                publish: Some(PublisherSpec {
                    index: u32::try_from(i)?,
                    topic: topic.clone(),
                }),
                filters: Vec::new(),
            });
        }
        clients.extend((0..idle).map(|k| ClientSpec {
            client_id: format!("fb-{run_id}-c{k}"),
            publish: None,
            filters: Vec::new(),
        }));
        Ok(Self {
            clients,
            publishers: pubs.len(),
            subscribers,
            subscriptions,
            receivers,
            publishers_known,
        })
    }
}

/// The filters of subscriber `j` in `subs`: one that matches publisher `j % p` (exact for even
/// `j`, a `+` wildcard for odd), then `k - 1` that match nothing, a third each exact, `+` and
/// `#`, all distinct, so the broker's tree holds `S × k` filters while each message goes to
/// `S / p` subscribers.
fn subs_filters(pattern: &str, j: usize, p: usize, k: usize) -> Vec<String> {
    let own = expand(pattern, j % p);
    let mut filters = Vec::with_capacity(k);
    filters.push(if j & 1 == 0 {
        own
    } else {
        let mut levels: Vec<&str> = own.split('/').collect();
        if let Some(last) = levels.last_mut() {
            *last = "+";
        }
        levels.join("/")
    });
    for n in 1..k {
        filters.push(match n % 3 {
            0 => format!("bench/noise/{j}/n{n}"),
            1 => format!("bench/noise/+/w{j}_{n}"),
            _ => format!("bench/noise/{j}/{n}/#"),
        });
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subs_filters_match_exactly_one_publisher() {
        let p = 4;
        for j in 0..8 {
            let filters = subs_filters("bench/subs/%i/data", j, p, 30);
            assert_eq!(filters.len(), 30);
            let hits: Vec<usize> = (0..p)
                .filter(|&i| {
                    let topic = expand("bench/subs/%i/data", i);
                    filters
                        .iter()
                        .any(|f| fulmar_proto::topic_matches(f, &topic))
                })
                .collect();
            assert_eq!(hits, vec![j % p]);
        }
    }
}

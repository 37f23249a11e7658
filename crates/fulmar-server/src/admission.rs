//! Admission of new connections: total and per-IP connection caps and a per-IP connection
//! rate, checked before a connection may cost anything beyond its socket.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::HashMap;
use parking_lot::Mutex;

use crate::config::Limits;

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_connections` reached.
    TooManyConnections,
    /// `limits.max_connections_per_ip` reached for this address.
    TooManyFromAddress,
    /// `limits.connection_rate_per_ip` exceeded for this address.
    RateExceeded,
}

/// Per-address bookkeeping, under the map's lock.
#[derive(Debug)]
struct AddressState {
    /// Shared with the address's guards, which give their place back without the lock.
    open: Arc<OpenCount>,
    window_start: Instant,
    window_count: u32,
}

/// The connections open from one address, and the broker's total: what a guard gives back
/// when it drops.
#[derive(Debug)]
struct OpenCount {
    from_address: AtomicUsize,
    total: Arc<AtomicUsize>,
}

/// Counts open connections and recent connection attempts.
///
/// # Invariants
/// - `total` equals the number of live [`Admitted`] guards, and an address's
///   `open.from_address` the number of them admitted from it.
/// - Counts only rise under the map's lock (a guard's drop lowers them without it), so no
///   admission comes between a cap's check and the increment after it.
/// - An address entry with nothing open outlives its rate window until the map holds more
///   than [`FORGET_ABOVE`] addresses, when every such entry is forgotten: the map is bounded
///   by the open connections' addresses plus those seen in the last second, or
///   [`FORGET_ABOVE`], whichever is more.
#[derive(Debug, Default)]
pub struct Admission {
    total: Arc<AtomicUsize>,
    /// Keyed by the address in its IPv6 form (IPv4 mapped, `::ffff:a.b.c.d`): an IPv4 client
    /// and one that reaches the broker through the mapped form are the same host, and share
    /// their limits.
    addresses: Mutex<HashMap<Ipv6Addr, AddressState>>,
}

/// Addresses the map may hold before it forgets those with nothing open and no current
/// rate window.
const FORGET_ABOVE: usize = 4096;

/// Proof of admission; gives its place back when dropped. One pointer, as every open
/// connection holds one (an `Arc<Admission>` and the address were 24 bytes).
#[derive(Debug)]
pub struct Admitted {
    open: Arc<OpenCount>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.from_address.fetch_sub(1, Ordering::Relaxed);
        self.open.total.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// Connections open now (awake or dormant).
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip` at `now`, or says why not.
    pub fn admit(&self, ip: IpAddr, limits: &Limits, now: Instant) -> Result<Admitted, Refusal> {
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut addresses = self.addresses.lock();
        if limits.max_connections > 0
            && self.total.load(Ordering::Relaxed) >= limits.max_connections
        {
            return Err(Refusal::TooManyConnections);
        }
        if addresses.len() > FORGET_ABOVE {
            addresses.retain(|_, s| {
                s.open.from_address.load(Ordering::Relaxed) > 0
                    || now.duration_since(s.window_start) < Duration::from_secs(1)
            });
        }
        let state = addresses.entry(ip).or_insert_with(|| AddressState {
            open: Arc::new(OpenCount {
                from_address: AtomicUsize::new(0),
                total: Arc::clone(&self.total),
            }),
            window_start: now,
            window_count: 0,
        });
        if now.duration_since(state.window_start) >= Duration::from_secs(1) {
            state.window_start = now;
            state.window_count = 0;
        }
        if limits.connection_rate_per_ip > 0 && state.window_count >= limits.connection_rate_per_ip
        {
            return Err(Refusal::RateExceeded);
        }
        state.window_count += 1;
        let open = &state.open.from_address;
        if limits.max_connections_per_ip > 0
            && open.load(Ordering::Relaxed) >= limits.max_connections_per_ip
        {
            return Err(Refusal::TooManyFromAddress);
        }
        open.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            open: Arc::clone(&state.open),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, rate: u32) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            connection_rate_per_ip: rate,
            ..Limits::default()
        }
    }

    #[test]
    fn per_ip_cap_frees_on_drop() {
        let admission = Arc::new(Admission::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let l = limits(0, 2, 0);
        let now = Instant::now();
        let a = admission.admit(ip, &l, now).unwrap();
        let _b = admission.admit(ip, &l, now).unwrap();
        assert_eq!(
            admission.admit(ip, &l, now).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(admission.admit(other, &l, now).is_ok());
        drop(a);
        assert!(admission.admit(ip, &l, now).is_ok());
    }

    #[test]
    fn total_cap_applies_across_addresses() {
        let admission = Arc::new(Admission::default());
        let l = limits(1, 0, 0);
        let now = Instant::now();
        let _a = admission
            .admit("127.0.0.1".parse().unwrap(), &l, now)
            .unwrap();
        let refused = admission
            .admit("127.0.0.2".parse().unwrap(), &l, now)
            .unwrap_err();
        assert_eq!(refused, Refusal::TooManyConnections);
    }

    #[test]
    fn rate_window_resets_after_a_second() {
        let admission = Arc::new(Admission::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let l = limits(0, 0, 2);
        let t0 = Instant::now();
        let _a = admission.admit(ip, &l, t0).unwrap();
        let _b = admission.admit(ip, &l, t0).unwrap();
        assert_eq!(
            admission.admit(ip, &l, t0).unwrap_err(),
            Refusal::RateExceeded
        );
        assert!(admission.admit(ip, &l, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn addresses_with_nothing_open_are_forgotten_past_the_bound() {
        let admission = Admission::default();
        let l = limits(0, 0, 0);
        let t0 = Instant::now();
        let held = admission
            .admit("10.0.0.1".parse().unwrap(), &l, t0)
            .unwrap();
        for i in 0..=FORGET_ABOVE as u128 {
            let ip = IpAddr::V6(Ipv6Addr::from((1 << 64) + i));
            drop(admission.admit(ip, &l, t0).unwrap());
        }
        // Their rate windows are current: nothing is forgotten yet.
        assert_eq!(admission.addresses.lock().len(), FORGET_ABOVE + 2);
        let later = t0 + Duration::from_secs(1);
        let _new = admission
            .admit("10.0.0.2".parse().unwrap(), &l, later)
            .unwrap();
        assert_eq!(admission.addresses.lock().len(), 2);
        assert_eq!(admission.open(), 2);
        drop(held);
        assert_eq!(admission.open(), 1);
    }

    #[test]
    fn an_ipv4_client_and_its_mapped_form_share_a_cap() {
        let admission = Arc::new(Admission::default());
        let l = limits(0, 1, 0);
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let other: IpAddr = "::1".parse().unwrap();
        let now = Instant::now();
        let _held = admission.admit(v4, &l, now).unwrap();
        assert_eq!(
            admission.admit(mapped, &l, now).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        assert!(admission.admit(other, &l, now).is_ok());
        assert_eq!(std::mem::size_of::<Option<Admitted>>(), 8);
    }
}

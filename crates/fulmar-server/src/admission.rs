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

/// Per-address bookkeeping.
#[derive(Debug)]
struct AddressState {
    open: usize,
    window_start: Instant,
    window_count: u32,
}

/// Counts open connections and recent connection attempts.
///
/// # Invariants
/// `total` equals the number of live [`Admitted`] guards; an address entry exists only while
/// it has open connections or a rate window that is still current, so the map is bounded by
/// the number of open connections plus the addresses seen in the last second.
#[derive(Debug, Default)]
pub struct Admission {
    total: AtomicUsize,
    /// Keyed by the address in its IPv6 form (IPv4 mapped, `::ffff:a.b.c.d`): 16 bytes
    /// aligned to 1, where an `IpAddr` is 17 aligned to 4, so that the guard every open
    /// connection holds is 24 bytes rather than 32. An IPv4 client and one that reaches the
    /// broker through the mapped form are the same host, and share their limits.
    addresses: Mutex<HashMap<Ipv6Addr, AddressState>>,
}

/// Proof of admission; releases its slot when dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    ip: Ipv6Addr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
        let mut addresses = self.admission.addresses.lock();
        if let Some(state) = addresses.get_mut(&self.ip) {
            state.open -= 1;
            if state.open == 0 && state.window_start.elapsed() >= Duration::from_secs(1) {
                addresses.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// Connections open now (awake or dormant).
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip` at `now`, or says why not.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &Limits,
        now: Instant,
    ) -> Result<Admitted, Refusal> {
        if limits.max_connections > 0
            && self.total.load(Ordering::Relaxed) >= limits.max_connections
        {
            return Err(Refusal::TooManyConnections);
        }
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut addresses = self.addresses.lock();
        if addresses.len() > 4096 {
            // Forget finished rate windows of addresses with nothing open.
            addresses.retain(|_, s| {
                s.open > 0 || now.duration_since(s.window_start) < Duration::from_secs(1)
            });
        }
        let state = addresses.entry(ip).or_insert(AddressState {
            open: 0,
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
        if limits.max_connections_per_ip > 0 && state.open >= limits.max_connections_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        state.open += 1;
        drop(addresses);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            admission: Arc::clone(self),
            ip,
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
        assert!(std::mem::size_of::<Option<Admitted>>() <= 24);
    }
}

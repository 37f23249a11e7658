//! CPU time and resident memory of a process, from Linux's `/proc` (and, for this process, its
//! CPU clock).

use std::time::Duration;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Resident set size in bytes (`VmRSS`).
    pub rss: u64,
}

impl ProcSample {
    /// CPU seconds from `earlier` (a sample of the same process) to this one.
    pub fn cpu_seconds_since(&self, earlier: &ProcSample) -> f64 {
        self.cpu.saturating_sub(earlier.cpu).as_secs_f64()
    }
}

/// Clock ticks per second of `/proc/*/stat` times: `sysconf(_SC_CLK_TCK)`, 100 on every Linux
/// configuration we run on.
const TICKS_PER_SECOND: u64 = 100;

/// Reads `/proc/<pid>`, CPU time in 10 ms ticks (this process: [`sample_self`]). `None` when
/// the process is gone or this is not Linux.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample {
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        rss: rss_bytes(pid)?,
    })
}

/// This process, with its CPU time to the nanosecond (`CLOCK_PROCESS_CPUTIME_ID`, every thread
/// included) rather than in `/proc`'s 10 ms ticks: a setup phase of a few milliseconds still
/// gets a figure. `None` where that clock or `/proc` is missing.
pub fn sample_self() -> Option<ProcSample> {
    Some(ProcSample {
        cpu: process_cpu_time()?,
        rss: rss_bytes("self")?,
    })
}

#[cfg(target_os = "linux")]
fn process_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    (result == 0).then(|| {
        Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    })
}

#[cfg(not(target_os = "linux"))]
fn process_cpu_time() -> Option<Duration> {
    None
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes (0 if the line is missing).
fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some(rss_kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            let s = super::sample("self").expect("/proc/self");
            assert!(s.rss > 0);
        }
    }

    #[test]
    fn this_process_cpu_time_counts_a_millisecond_of_work() {
        if cfg!(target_os = "linux") {
            let before = super::sample_self().expect("clock and /proc/self");
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(1) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let after = super::sample_self().expect("clock and /proc/self");
            assert!(after.rss > 0);
            // 10 ms ticks would show nothing here.
            assert!(
                after.cpu > before.cpu,
                "{:?} then {:?} after {x} spins",
                before.cpu,
                after.cpu
            );
        }
    }
}

//! CPU time and resident memory of a process, from Linux's `/proc`.

use std::time::Duration;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Resident set size in bytes (`VmRSS`).
    pub rss: u64,
}

/// Clock ticks per second of `/proc/*/stat` times. `sysconf(_SC_CLK_TCK)` is 100 on every
/// Linux configuration we run on; reading it would need libc.
const TICKS_PER_SECOND: u64 = 100;

/// Reads `/proc/<pid>` (`"self"` for this process). `None` when the process is gone or this is
/// not Linux.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        rss: rss_kb * 1024,
    })
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
}

//! CPU time and resident memory of processes, read from `/proc`.
//!
//! `utime`/`stime` (fields 14 and 15 of `/proc/PID/stat`) count every thread
//! of the process in clock ticks; the tick length comes from
//! `getconf CLK_TCK`, run once (100 when that fails, the Linux default).

use std::sync::OnceLock;

/// CPU time of a set of processes, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// User-mode ticks.
    pub user: u64,
    /// Kernel-mode ticks.
    pub system: u64,
}

impl Cpu {
    /// Ticks from `self` to `later`.
    pub fn until(self, later: Cpu) -> Cpu {
        Cpu {
            user: later.user.saturating_sub(self.user),
            system: later.system.saturating_sub(self.system),
        }
    }

    /// User time in microseconds.
    pub fn user_us(self) -> f64 {
        self.user as f64 * 1e6 / clk_tck() as f64
    }

    /// System time in microseconds.
    pub fn system_us(self) -> f64 {
        self.system as f64 * 1e6 / clk_tck() as f64
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(100)
    })
}

/// `utime` and `stime` out of the text of a `/proc/PID/stat` file.
pub fn parse_stat(stat: &str) -> Option<Cpu> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start past the last `)`; there, `state` is field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let user = fields.nth(11)?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(Cpu { user, system })
}

/// `VmRSS` in KiB out of the text of a `/proc/PID/status` file.
pub fn parse_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks summed over `pids` (a process that is gone counts 0).
pub fn cpu_of(pids: &[u32]) -> Cpu {
    let mut sum = Cpu::default();
    for pid in pids {
        if let Some(c) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            sum.user += c.user;
            sum.system += c.system;
        }
    }
    sum
}

/// CPU ticks of the bench itself.
pub fn own_cpu() -> Cpu {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .unwrap_or_default()
}

/// Resident memory summed over `pids`, in KiB.
pub fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| parse_rss_kb(&s))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        let stat = "1234 (huddle (x) y) S 1 1234 1234 0 -1 4194560 500 0 0 0 731 42 0 0 20 0 9 0 100 2000000 3000 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Cpu {
                user: 731,
                system: 42
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rss_line() {
        let status = "Name:\thuddle\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kb(status), Some(12345));
        assert_eq!(parse_rss_kb("Name: x\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(rss_kb(&[std::process::id()]) > 0);
        let a = own_cpu();
        assert!(a.until(own_cpu()).user < 1_000_000);
    }
}

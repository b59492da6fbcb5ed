//! The open-files limit: every connection is a file descriptor, so it caps
//! how many connections a node can hold.
//!
//! Shells and service managers commonly start a process with a soft limit
//! of 1024 and a much higher hard limit (systemd: 1024 / 524,288). A node
//! left at 1024 refuses connections past about a thousand, with
//! "Too many open files" in its log. So at start the node raises its soft
//! limit to the hard limit (as the Go runtime does for every program),
//! bounded by the kernel's `fs.nr_open`, and says what it got. Raising the
//! hard limit itself is the operator's (`ulimit -Hn`, `LimitNOFILE=`,
//! Docker's `ulimits`).

use rlimit::Resource;

/// Most file descriptors the node keeps for itself beyond its connections
/// (listeners, the store's files, Redis and MongoDB connections, uploads in
/// progress, HTTP requests); see [`connection_cap`].
const RESERVE_MAX: u64 = 1024;
/// A limit below this is worth a warning: it caps the node at a few
/// thousand connections.
const WARN_BELOW: u64 = 16_384;

/// The kernel's ceiling for any process's open-files limit
/// (`/proc/sys/fs/nr_open`), where it can be read.
fn kernel_ceiling() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The soft limit to ask for: the hard one, bounded by the kernel's
/// ceiling (an unlimited hard limit cannot be the soft one).
fn target(hard: u64, ceiling: Option<u64>) -> u64 {
    ceiling.map_or(hard, |c| hard.min(c))
}

/// Raises the soft open-files limit to the hard one. Never fails the start:
/// what could not be read or set is logged and the limit left as it was.
pub fn raise() {
    if !Resource::NOFILE.is_supported() {
        return;
    }
    let (before, hard) = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("open files: reading the limit failed: {e}");
            return;
        }
    };
    let wanted = target(hard, kernel_ceiling());
    let mut now = before;
    if before < wanted {
        match Resource::NOFILE.set(wanted, hard) {
            Ok(()) => now = wanted,
            Err(e) => log::warn!(
                "open files: raising the soft limit from {before} to {wanted} failed: {e}"
            ),
        }
    }
    if now != before {
        log::info!("open files: soft limit raised from {before} to {now} (the hard limit)");
    } else {
        log::info!("open files: limit {now}");
    }
    if now < WARN_BELOW {
        log::warn!(
            "open files: the limit of {now} leaves room for {} connections; \
             raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, Docker ulimits) for more",
            connection_cap(now)
        );
    }
}

/// Connections a node holds at most under an open-files limit of `limit`
/// (for `limits.max_connections = 0`): the limit less what the node keeps
/// for itself — an eighth of it, at most `RESERVE_MAX` — so a full node
/// still has files for its store, uploads, Redis and MongoDB, and for the
/// HTTP requests that answer the refused ones.
pub fn connection_cap(limit: u64) -> usize {
    let kept = (limit / 8).min(RESERVE_MAX);
    usize::try_from(limit - kept).unwrap_or(usize::MAX).max(1)
}

/// The soft open-files limit now, for `/metrics`.
pub fn current() -> Option<u64> {
    Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// How many files the process has open, for `/metrics` (Linux: the entries
/// of `/proc/self/fd`).
pub fn open() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_hard_limit_within_the_kernels_ceiling() {
        assert_eq!(target(20_000, Some(1_048_576)), 20_000);
        assert_eq!(target(u64::MAX, Some(1_048_576)), 1_048_576);
        assert_eq!(target(4096, None), 4096);
    }

    #[test]
    fn the_connection_cap_keeps_an_eighth_of_the_files_at_most_1024() {
        assert_eq!(connection_cap(1024), 896);
        assert_eq!(connection_cap(20_000), 18_976);
        assert_eq!(connection_cap(1_048_576), 1_047_552);
        assert_eq!(connection_cap(4), 4);
        assert_eq!(connection_cap(0), 1);
    }
}

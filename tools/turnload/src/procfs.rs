//! What the load tool reads from /proc: a process's CPU time (utime + stime of
//! `/proc/PID/stat`), its resident memory (`/proc/PID/status`), and the kernel's per-socket
//! UDP drop counters (`/proc/net/udp`, `/proc/net/udp6`) for the tool's own sockets and the
//! server's. Parsers are pure; the readers are thin.

use std::collections::HashSet;
use std::path::Path;

/// Clock ticks per second of `/proc/PID/stat` times. USER_HZ is part of Linux's ABI and is
/// 100 on every architecture it supports today (sysconf(_SC_CLK_TCK) answers the same).
pub const USER_HZ: u64 = 100;

/// utime + stime in clock ticks, from the text of `/proc/PID/stat` (fields 14 and 15,
/// proc(5)); the command name may contain spaces and parentheses, so fields are counted
/// after its last `)`.
#[must_use]
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid (4), ..., utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of `pid` in microseconds.
pub fn cpu_us(pid: u32) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&text)
        .map(|t| t * 1_000_000 / USER_HZ)
        .ok_or_else(|| std::io::Error::other(format!("unexpected /proc/{pid}/stat")))
}

/// A `Key:   123 kB` line of `/proc/PID/status`, in kB.
#[must_use]
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Resident and peak resident memory of `pid` in kB (VmRSS, VmHWM).
pub fn rss_kb(pid: u32) -> std::io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((
        parse_status_kb(&text, "VmRSS").unwrap_or(0),
        parse_status_kb(&text, "VmHWM").unwrap_or(0),
    ))
}

/// One row of `/proc/net/udp` or `/proc/net/udp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSocketRow {
    pub local_port: u16,
    pub inode: u64,
    pub drops: u64,
}

/// Rows of `/proc/net/udp{,6}`: `sl local rem st tx:rx tr:when retr uid timeout inode ref
/// pointer drops`; the header line and malformed lines are skipped.
#[must_use]
pub fn parse_net_udp(text: &str) -> Vec<UdpSocketRow> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 13 || !f[0].ends_with(':') {
                return None;
            }
            let port_hex = f[1].rsplit(':').next()?;
            Some(UdpSocketRow {
                local_port: u16::from_str_radix(port_hex, 16).ok()?,
                inode: f[9].parse().ok()?,
                drops: f[f.len() - 1].parse().ok()?,
            })
        })
        .collect()
}

/// Every UDP socket of this network namespace.
#[must_use]
pub fn udp_sockets() -> Vec<UdpSocketRow> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_net_udp(&t))
        .collect()
}

/// Socket inodes held open by `pid` (its `/proc/PID/fd` links `socket:[N]`).
#[must_use]
pub fn socket_inodes(pid: u32) -> HashSet<u64> {
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(Path::new(&dir)) else {
        return HashSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Datagrams dropped at full receive buffers on the UDP sockets `pid` holds.
#[must_use]
pub fn udp_drops_of(pid: u32) -> u64 {
    let inodes = socket_inodes(pid);
    udp_sockets()
        .iter()
        .filter(|r| inodes.contains(&r.inode))
        .map(|r| r.drops)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_when_the_name_has_spaces_and_parentheses() {
        // proc(5): fields 14 (utime) and 15 (stime).
        let stat = "1234 (turn server) (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    250 75 0 0 20 0 3 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn resident_memory_is_read_from_the_status_lines_in_kilobytes() {
        let status = "Name:\tturnserver\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(10_240));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(20_480));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn udp_rows_yield_local_port_inode_and_drop_count() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  123: 0100007F:0D96 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n";
        assert_eq!(
            parse_net_udp(text),
            [UdpSocketRow {
                local_port: 3478,
                inode: 4242,
                drops: 17
            }]
        );
    }
}

//! Per-queue packet counters from a driver's ethtool statistics (`ethtool -S`), for the
//! rebalancer's metrics.
//!
//! Netdev netlink `qstats-get` is the generic source, but igb (the SR-IOV rig's NIC) and
//! many other drivers do not implement it; nearly all of them export per-queue counters
//! among their driver statistics instead (ETHTOOL_GSTRINGS + ETHTOOL_GSTATS), under names
//! that differ by driver. Those names are matched by [`queue_counter`] (pure, tested); the
//! ioctls are here. The device is named by ifindex and resolved to its current name right
//! before the request, so a rename by udev between two periods changes nothing.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use nix::errno::Errno;

use super::ethtool::{ifname as kernel_name, siocethtool};

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// struct ethtool_drvinfo: cmd, five 32-byte strings, 12 reserved bytes, then n_priv_flags,
/// n_stats, testinfo_len, eedump_len, regdump_len.
const DRVINFO_LEN: usize = 196;
const DRVINFO_N_STATS: usize = 180;
/// No driver has anywhere near this many statistics; a bigger count is a broken answer.
const MAX_STATS: usize = 1 << 16;

/// Why the counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolStatsError {
    /// The socket for the ioctls could not be opened.
    #[error("cannot open a socket for ethtool requests: {0}")]
    Socket(Errno),
    /// The ifindex names no netdev in this network namespace (gone, or moved elsewhere).
    #[error("ifindex {0} is not a network interface in this network namespace")]
    NoDevice(u32),
    /// The driver refused a request.
    #[error("ethtool {what} on ifindex {ifindex} ({name}) failed: {errno}")]
    Request {
        what: &'static str,
        ifindex: u32,
        name: String,
        errno: Errno,
    },
    /// The driver's answer does not add up.
    #[error("ethtool statistics of ifindex {ifindex} are inconsistent: {why}")]
    Inconsistent { ifindex: u32, why: String },
}

/// Rx or tx side of a queue counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Rx,
    Tx,
}

/// Which per-queue packet counter a driver statistic is, if any. Known spellings:
/// `rx_queue_3_packets` (igb, ixgbe, ice, virtio_net, e1000e-family), `rx-3.packets`
/// (i40e, iavf), `rx3_packets` (mlx5), `rxq3_packets` (some others). Bytes, drops and
/// per-queue errors are not packets and are not matched.
pub fn queue_counter(name: &str) -> Option<(Direction, u32)> {
    let (dir, rest) = if let Some(r) = name.strip_prefix("rx") {
        (Direction::Rx, r)
    } else if let Some(r) = name.strip_prefix("tx") {
        (Direction::Tx, r)
    } else {
        return None;
    };
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let index = if let Some(r) = rest.strip_prefix("_queue_") {
        number(r.strip_suffix("_packets")?)?
    } else if let Some(r) = rest.strip_prefix('-') {
        number(r.strip_suffix(".packets")?)?
    } else if let Some(r) = rest.strip_prefix('q') {
        number(r.strip_suffix("_packets")?)?
    } else {
        number(rest.strip_suffix("_packets")?)?
    };
    Some((dir, index))
}

/// Per-queue packet counts of one netdev: (direction, queue index) -> packets.
pub type QueuePackets = HashMap<(Direction, u32), u64>;

/// Picks the per-queue packet counters out of a driver's statistics (names and values in
/// the driver's order).
pub fn queue_packets(names: &[String], values: &[u64]) -> QueuePackets {
    names
        .iter()
        .zip(values)
        .filter_map(|(n, v)| queue_counter(n).map(|k| (k, *v)))
        .collect()
}

/// Reads drivers' statistics. Keeps each device's statistic names, which the driver
/// only changes with its queue count (re-read when the count of statistics changes).
pub struct StatsReader {
    sock: OwnedFd,
    names: HashMap<u32, Vec<String>>,
}

impl StatsReader {
    pub fn new() -> Result<StatsReader, EthtoolStatsError> {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(EthtoolStatsError::Socket)?;
        Ok(StatsReader {
            sock,
            names: HashMap::new(),
        })
    }

    /// The per-queue packet counters of the netdev with this ifindex.
    pub fn queue_packets(&mut self, ifindex: u32) -> Result<QueuePackets, EthtoolStatsError> {
        let name = ifname(ifindex)?;
        let n = self.count(ifindex, &name)?;
        if self.names.get(&ifindex).map(Vec::len) != Some(n) {
            let names = self.strings(ifindex, &name, n)?;
            self.names.insert(ifindex, names);
        }
        let values = self.values(ifindex, &name, n)?;
        if values.len() != n {
            // The driver changed its statistics between the two requests: ask again next
            // period with fresh names.
            self.names.remove(&ifindex);
            return Err(EthtoolStatsError::Inconsistent {
                ifindex,
                why: format!("{n} names but {} values", values.len()),
            });
        }
        Ok(queue_packets(&self.names[&ifindex], &values))
    }

    /// Forgets devices that are gone.
    pub fn retain(&mut self, ifindexes: &[u32]) {
        self.names.retain(|i, _| ifindexes.contains(i));
    }

    fn ioctl(
        &self,
        what: &'static str,
        ifindex: u32,
        name: &str,
        buf: &mut [u8],
    ) -> Result<(), EthtoolStatsError> {
        let fail = |errno| EthtoolStatsError::Request {
            what,
            ifindex,
            name: name.to_string(),
            errno,
        };
        // A name the kernel just gave is always a valid one.
        let kname = kernel_name(name).map_err(|_| fail(Errno::EINVAL))?;
        siocethtool(&self.sock, kname, buf).map_err(fail)
    }

    fn count(&self, ifindex: u32, name: &str) -> Result<usize, EthtoolStatsError> {
        let mut buf = vec![0u8; DRVINFO_LEN];
        buf[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
        self.ioctl("GDRVINFO", ifindex, name, &mut buf)?;
        let n = u32::from_ne_bytes(
            buf[DRVINFO_N_STATS..DRVINFO_N_STATS + 4]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        if n > MAX_STATS {
            return Err(EthtoolStatsError::Inconsistent {
                ifindex,
                why: format!("the driver claims {n} statistics"),
            });
        }
        Ok(n)
    }

    fn strings(
        &self,
        ifindex: u32,
        name: &str,
        n: usize,
    ) -> Result<Vec<String>, EthtoolStatsError> {
        let mut buf = vec![0u8; 12 + n * ETH_GSTRING_LEN];
        buf[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        buf[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        buf[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
        self.ioctl("GSTRINGS", ifindex, name, &mut buf)?;
        let got = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
        Ok(buf[12..]
            .chunks(ETH_GSTRING_LEN)
            .take(got.min(n))
            .map(|c| {
                let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect())
    }

    fn values(&self, ifindex: u32, name: &str, n: usize) -> Result<Vec<u64>, EthtoolStatsError> {
        let mut buf = vec![0u8; 8 + n * 8];
        buf[..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
        buf[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
        self.ioctl("GSTATS", ifindex, name, &mut buf)?;
        let got = u32::from_ne_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
        Ok(buf[8..]
            .chunks(8)
            .take(got.min(n))
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
}

/// The current name of the netdev with this ifindex in this network namespace.
fn ifname(ifindex: u32) -> Result<String, EthtoolStatsError> {
    super::netdev_name(ifindex).map_err(|_| EthtoolStatsError::NoDevice(ifindex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_spellings() {
        use Direction::*;
        for (name, want) in [
            ("rx_queue_0_packets", Some((Rx, 0))),
            ("tx_queue_15_packets", Some((Tx, 15))),
            ("rx-3.packets", Some((Rx, 3))),
            ("tx-12.packets", Some((Tx, 12))),
            ("rx7_packets", Some((Rx, 7))),
            ("txq2_packets", Some((Tx, 2))),
            ("rx_queue_0_bytes", None),
            ("rx_queue_0_drops", None),
            ("rx_packets", None),
            ("tx_packets", None),
            ("rx_queue__packets", None),
            ("rx_queue_x_packets", None),
            ("rx_queue_123456_packets", None),
            ("rx-3.bytes", None),
            ("os2bmc_rx_by_bmc", None),
            ("rx_csum_offload_good", None),
        ] {
            assert_eq!(queue_counter(name), want, "{name}");
        }
    }

    #[test]
    fn picks_queue_packets() {
        let names: Vec<String> = [
            "rx_packets",
            "rx_queue_0_packets",
            "rx_queue_0_bytes",
            "tx_queue_0_packets",
            "rx_queue_1_packets",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = queue_packets(&names, &[100, 60, 9000, 7, 40]);
        assert_eq!(p.len(), 3);
        assert_eq!(p[&(Direction::Rx, 0)], 60);
        assert_eq!(p[&(Direction::Tx, 0)], 7);
        assert_eq!(p[&(Direction::Rx, 1)], 40);
    }

    /// An ifindex that names nothing is an error naming it, not an empty answer.
    #[test]
    fn unknown_ifindex() {
        let mut r = StatsReader::new().unwrap();
        let e = r.queue_packets(u32::MAX - 7).unwrap_err();
        assert!(e.to_string().contains("ifindex 4294967288"), "{e}");
        assert!(e.to_string().contains("not a network interface"), "{e}");
    }
}

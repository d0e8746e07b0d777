//! Per-queue packet counters from netdev netlink (`qstats-get`, Linux 6.9+), the generic
//! source where a driver implements it (virtio_net, mlx5, bnxt, ...). Drivers that do not
//! (igb among them) answer with nothing per queue, and the daemon falls back to their ethtool
//! statistics ([`super::ethtool_stats`]).
//!
//! Plain generic netlink through the kernel layer's one request loop ([`super::nlsock`]):
//! resolve the `netdev` family, then one dump request scoped to queues and to one ifindex.

use std::collections::HashMap;
use std::time::Duration;

use netlink_packet_core::NLM_F_DUMP;
use nix::errno::Errno;

use super::ethtool_stats::{Direction, QueuePackets};
use super::nlsock::{self, Failure, GENL_HEADER, NlSocket, put_attr as attr};

/// How long one read may take: the daemon asks every period, and a kernel that does not
/// answer within a second is better skipped for that period than waited for.
const REPLY_WITHIN: Duration = Duration::from_secs(1);
const NETDEV_CMD_QSTATS_GET: u8 = 12;
const NETDEV_A_QSTATS_IFINDEX: u16 = 1;
const NETDEV_A_QSTATS_QUEUE_TYPE: u16 = 2;
const NETDEV_A_QSTATS_QUEUE_ID: u16 = 3;
const NETDEV_A_QSTATS_SCOPE: u16 = 4;
const NETDEV_A_QSTATS_RX_PACKETS: u16 = 8;
const NETDEV_A_QSTATS_TX_PACKETS: u16 = 10;
const NETDEV_QSTATS_SCOPE_QUEUE: u32 = 1;
const NETDEV_QUEUE_TYPE_RX: u32 = 0;
const NETDEV_QUEUE_TYPE_TX: u32 = 1;

/// Why qstats could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QstatsError {
    /// The netlink socket could not be opened or used.
    #[error("netdev netlink: {what} failed: {errno}")]
    Socket { what: &'static str, errno: Errno },
    /// The kernel has no `netdev` generic netlink family (before Linux 6.2).
    #[error("this kernel has no netdev netlink family")]
    NoFamily,
    /// The kernel refused the request (EOPNOTSUPP: the driver has no qstats).
    #[error("netdev netlink qstats of ifindex {ifindex}: {errno}")]
    Refused { ifindex: u32, errno: Errno },
    /// An answer that does not parse.
    #[error("netdev netlink answered a malformed message: {0}")]
    Malformed(&'static str),
}

/// A netdev netlink socket with the family resolved.
pub struct Qstats {
    sock: NlSocket,
    family: u16,
}

/// The attributes of one message, or why they do not parse.
fn attrs(b: &[u8]) -> Result<Vec<(u16, &[u8])>, QstatsError> {
    nlsock::attrs(b).ok_or(QstatsError::Malformed("an attribute overruns its message"))
}

fn uint(p: &[u8]) -> Option<u64> {
    match p.len() {
        4 => Some(u32::from_ne_bytes(p.try_into().ok()?) as u64),
        8 => Some(u64::from_ne_bytes(p.try_into().ok()?)),
        _ => None,
    }
}

/// The per-queue packet counters in a qstats dump's messages (pure; the messages are the
/// genetlink payloads after the 4-byte genl header).
pub fn parse_queue_packets(messages: &[Vec<u8>]) -> Result<QueuePackets, QstatsError> {
    let mut out: QueuePackets = HashMap::new();
    for m in messages {
        let a = attrs(m)?;
        let get = |k: u16| a.iter().find(|(t, _)| *t == k).and_then(|(_, p)| uint(p));
        let (Some(kind), Some(id)) = (
            get(NETDEV_A_QSTATS_QUEUE_TYPE),
            get(NETDEV_A_QSTATS_QUEUE_ID),
        ) else {
            continue;
        };
        let (dir, packets) = match kind as u32 {
            NETDEV_QUEUE_TYPE_RX => (Direction::Rx, get(NETDEV_A_QSTATS_RX_PACKETS)),
            NETDEV_QUEUE_TYPE_TX => (Direction::Tx, get(NETDEV_A_QSTATS_TX_PACKETS)),
            _ => continue,
        };
        if let Some(p) = packets {
            out.insert((dir, id as u32), p);
        }
    }
    Ok(out)
}

impl Qstats {
    pub fn open() -> Result<Qstats, QstatsError> {
        let mut sock = NlSocket::open_within(netlink_sys::constants::NETLINK_GENERIC, REPLY_WITHIN)
            .map_err(|e| QstatsError::Socket {
                what: "socket",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        match nlsock::genl_family(&mut sock, "netdev") {
            Ok(Some(family)) if family != 0 => Ok(Qstats { sock, family }),
            Ok(_) => Err(QstatsError::NoFamily),
            Err(f) if f.errno() == Errno::ENOENT => Err(QstatsError::NoFamily),
            Err(f) => Err(failed(f, 0)),
        }
    }

    /// Per-queue packets of the netdev with this ifindex. Empty when the driver keeps no
    /// per-queue qstats.
    pub fn queue_packets(&mut self, ifindex: u32) -> Result<QueuePackets, QstatsError> {
        let mut a = Vec::new();
        attr(&mut a, NETDEV_A_QSTATS_IFINDEX, &ifindex.to_ne_bytes());
        attr(
            &mut a,
            NETDEV_A_QSTATS_SCOPE,
            &NETDEV_QSTATS_SCOPE_QUEUE.to_ne_bytes(),
        );
        let request = nlsock::genl(self.family, NETDEV_CMD_QSTATS_GET, &a);
        let replies = self
            .sock
            .request(request, NLM_F_DUMP)
            .map_err(|f| failed(f, ifindex))?;
        let msgs = replies
            .into_iter()
            .map(|m| {
                m.payload
                    .get(GENL_HEADER..)
                    .map(<[u8]>::to_vec)
                    .ok_or(QstatsError::Malformed("a short genetlink message"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        parse_queue_packets(&msgs)
    }
}

/// A failed exchange in this module's terms: a refusal names the ifindex asked about.
fn failed(f: Failure, ifindex: u32) -> QstatsError {
    match f {
        Failure::Refused(_) => QstatsError::Refused {
            ifindex,
            errno: f.errno(),
        },
        Failure::Send(_) => QstatsError::Socket {
            what: "send",
            errno: f.errno(),
        },
        Failure::Recv(_) | Failure::NoReply(_) => QstatsError::Socket {
            what: "recv",
            errno: f.errno(),
        },
        Failure::Unreadable(_) => QstatsError::Malformed("a message overruns the datagram"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u32, id: u32, rx: Option<u64>, tx: Option<u64>) -> Vec<u8> {
        let mut b = Vec::new();
        attr(&mut b, NETDEV_A_QSTATS_IFINDEX, &2u32.to_ne_bytes());
        attr(&mut b, NETDEV_A_QSTATS_QUEUE_TYPE, &kind.to_ne_bytes());
        attr(&mut b, NETDEV_A_QSTATS_QUEUE_ID, &id.to_ne_bytes());
        if let Some(r) = rx {
            attr(&mut b, NETDEV_A_QSTATS_RX_PACKETS, &r.to_ne_bytes());
        }
        if let Some(t) = tx {
            // A small counter may come as 4 bytes (netlink "uint").
            attr(
                &mut b,
                NETDEV_A_QSTATS_TX_PACKETS,
                &(t as u32).to_ne_bytes(),
            );
        }
        b
    }

    #[test]
    fn queue_messages() {
        let p = parse_queue_packets(&[
            msg(0, 0, Some(1 << 40), None),
            msg(0, 1, Some(7), None),
            msg(1, 0, None, Some(9)),
            msg(1, 1, None, None),
            msg(5, 0, Some(3), None),
        ])
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&(Direction::Rx, 0)], 1 << 40);
        assert_eq!(p[&(Direction::Rx, 1)], 7);
        assert_eq!(p[&(Direction::Tx, 0)], 9);
        let mut bad = msg(0, 0, Some(1), None);
        bad[0] = 200;
        assert!(parse_queue_packets(&[bad]).is_err());
    }
}

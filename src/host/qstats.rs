//! Per-queue packet counters from netdev netlink (`qstats-get`, Linux 6.9+), the generic
//! source where a driver implements it (virtio_net, mlx5, bnxt, ...). Drivers that do not
//! (igb among them) answer with nothing per queue, and the daemon falls back to their ethtool
//! statistics ([`super::ethtool_stats`]).
//!
//! Plain generic netlink over a raw socket: resolve the `netdev` family, then one dump request
//! scoped to queues and to one ifindex.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::ethtool_stats::{Direction, QueuePackets};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
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
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;

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
    sock: OwnedFd,
    family: u16,
    seq: u32,
}

fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Walks netlink attributes: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, QstatsError> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return Err(QstatsError::Malformed("an attribute overruns its message"));
        }
        out.push((kind, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Ok(out)
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
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(QstatsError::Socket {
                what: "socket",
                errno: Errno::last(),
            });
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO reads a timeval of the given size from `tv`.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut q = Qstats {
            sock,
            family: 0,
            seq: 0,
        };
        let mut a = Vec::new();
        attr(&mut a, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
        let msgs = q
            .request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_ACK, &a)
            .map_err(|e| match e {
                QstatsError::Refused {
                    errno: Errno::ENOENT,
                    ..
                } => QstatsError::NoFamily,
                e => e,
            })?;
        for m in &msgs {
            for (t, p) in attrs(m)? {
                if t == CTRL_ATTR_FAMILY_ID && p.len() >= 2 {
                    q.family = u16::from_ne_bytes([p[0], p[1]]);
                }
            }
        }
        if q.family == 0 {
            return Err(QstatsError::NoFamily);
        }
        Ok(q)
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
        let msgs = self
            .request(self.family, NETDEV_CMD_QSTATS_GET, NLM_F_DUMP, &a)
            .map_err(|e| match e {
                QstatsError::Refused { errno, .. } => QstatsError::Refused { ifindex, errno },
                e => e,
            })?;
        parse_queue_packets(&msgs)
    }

    /// Sends one request and collects the genetlink payloads of the answer (until DONE for a
    /// dump, or the ack).
    fn request(
        &mut self,
        family: u16,
        cmd: u8,
        flags: u16,
        attrs_buf: &[u8],
    ) -> Result<Vec<Vec<u8>>, QstatsError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = 16 + 4 + attrs_buf.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&family.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[cmd, 1, 0, 0]);
        m.extend_from_slice(attrs_buf);
        // SAFETY: send(2) reads `m.len()` bytes from `m`, which outlives the call.
        let r = unsafe { libc::send(self.sock.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        if r < 0 {
            return Err(QstatsError::Socket {
                what: "send",
                errno: Errno::last(),
            });
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`.
            let n =
                unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(QstatsError::Socket {
                    what: "recv",
                    errno: Errno::last(),
                });
            }
            let mut b = &buf[..n as usize];
            while b.len() >= 16 {
                let mlen = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
                let mtype = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes"));
                if mlen < 16 || mlen > b.len() {
                    return Err(QstatsError::Malformed("a message overruns the datagram"));
                }
                let body = &b[16..mlen];
                b = &b[mlen.next_multiple_of(4).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match mtype {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = body
                            .get(0..4)
                            .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
                            .ok_or(QstatsError::Malformed("a short error message"))?;
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(QstatsError::Refused {
                            ifindex: 0,
                            errno: Errno::from_raw(-code),
                        });
                    }
                    _ => {
                        if body.len() < 4 {
                            return Err(QstatsError::Malformed("a short genetlink message"));
                        }
                        out.push(body[4..].to_vec());
                    }
                }
            }
        }
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

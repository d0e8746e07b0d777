//! One netlink request and its reply on a blocking socket: the loop that rtnetlink
//! (`host::netlink`, `host::vlan`, `host::tcflow::link_facts`, the macvlan requests of
//! `host::ethtool`), the ethtool family (`host::ethtool`) and netdev qstats (`host::qstats`)
//! all go through, so that each of them ends a reply, reads a refusal and bounds a silent
//! kernel the same way. Each caller turns a [`Failure`] into its own module's error.
//!
//! A short command or a switch worker has no async runtime to spare, and a socket of its own
//! means every reply read is ours; the sequence number tells a late answer to an earlier
//! request on a kept socket (qstats, the ethtool family's lookup) from the one awaited.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use netlink_packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use nix::errno::Errno;

/// How long one read of a reply may take: as long as the async rtnetlink calls are allowed
/// (`host::sriov`). The kernel answers at once; should an answer never come, the request
/// fails, naming itself, instead of holding up apply or a switch worker for good.
pub(crate) const REPLY_WITHIN: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// send(2) failed.
    Send(io::Error),
    /// recv(2) failed.
    Recv(io::Error),
    /// Nothing came within the socket's bound.
    NoReply(Duration),
    /// The kernel answered NLMSG_ERROR with an error code.
    Refused(ErrorMessage),
    /// An answer that does not parse.
    Unreadable(String),
}

impl Failure {
    /// The errno a byte-level caller reports: the socket's, the kernel's refusal, EAGAIN for
    /// a read that timed out (what recv(2) says then), EPROTO for an unreadable answer.
    pub(crate) fn errno(&self) -> Errno {
        match self {
            Failure::Send(e) | Failure::Recv(e) => {
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
            }
            Failure::NoReply(_) => Errno::EAGAIN,
            Failure::Refused(e) => Errno::from_raw(-e.raw_code()),
            Failure::Unreadable(_) => Errno::EPROTO,
        }
    }

    /// The I/O failure as an `io::Error`; a silent kernel as `TimedOut`, saying how long it
    /// was given.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Failure::Send(e) | Failure::Recv(e) => e,
            Failure::NoReply(within) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the kernel sent no reply within {} s", within.as_secs()),
            ),
            Failure::Refused(e) => e.to_io(),
            Failure::Unreadable(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        }
    }
}

/// A message whose payload vportd encodes and decodes itself (generic netlink families,
/// requests compared byte for byte with the `ethtool` and `ip` binaries'): its type and the
/// bytes after the netlink header.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub kind: u16,
    pub payload: Vec<u8>,
}

impl NetlinkSerializable for Raw {
    fn message_type(&self) -> u16 {
        self.kind
    }
    fn buffer_len(&self) -> usize {
        self.payload.len()
    }
    fn serialize(&self, buffer: &mut [u8]) {
        buffer.copy_from_slice(&self.payload);
    }
}

impl NetlinkDeserializable for Raw {
    type Error = Infallible;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Raw, Infallible> {
        Ok(Raw {
            kind: header.message_type,
            payload: payload.to_vec(),
        })
    }
}

/// A blocking netlink socket of one protocol, connected to the kernel.
pub(crate) struct NlSocket {
    sock: netlink_sys::Socket,
    seq: u32,
    reply_within: Duration,
}

impl NlSocket {
    /// A socket of `protocol` (`NETLINK_ROUTE`, `NETLINK_GENERIC`) whose reads wait at most
    /// [`REPLY_WITHIN`].
    pub(crate) fn open(protocol: isize) -> io::Result<NlSocket> {
        NlSocket::open_within(protocol, REPLY_WITHIN)
    }

    /// [`NlSocket::open`] with another bound on each read, for a caller on a tick of its own.
    pub(crate) fn open_within(protocol: isize, reply_within: Duration) -> io::Result<NlSocket> {
        let mut sock = netlink_sys::Socket::new(protocol)?;
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(
                reply_within.as_secs() as i64,
                reply_within.subsec_micros() as i64,
            ),
        )?;
        sock.bind_auto()?;
        sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        Ok(NlSocket {
            sock,
            seq: 0,
            reply_within,
        })
    }

    /// The sequence number for the next request, for callers that encode it themselves.
    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `payload` as a request of its family and returns the messages of the reply.
    /// With `NLM_F_DUMP` in `flags` the reply is read up to NLMSG_DONE; otherwise the kernel
    /// is asked to ack, and the reply ends there (a change returns no messages).
    pub(crate) fn request<T>(&mut self, payload: T, flags: u16) -> Result<Vec<T>, Failure>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
    {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        // Without an ack a change would have no reply to end the read.
        if flags & NLM_F_DUMP != NLM_F_DUMP {
            header.flags |= NLM_F_ACK;
        }
        header.sequence_number = self.next_seq();
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.exchange(&buf)
    }

    /// Sends a request encoded whole (header included, asking for an ack or a dump: nothing
    /// else ends a reply) and returns the messages of its reply, those with its sequence
    /// number, up to NLMSG_DONE or the ack. An NLMSG_ERROR with a code is a refusal.
    pub(crate) fn exchange<T: NetlinkDeserializable>(
        &mut self,
        request: &[u8],
    ) -> Result<Vec<T>, Failure> {
        let seq = request
            .get(8..12)
            .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| Failure::Unreadable("a request shorter than its header".into()))?;
        self.sock.send(request, 0).map_err(Failure::Send)?;
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(|err| {
                if err.kind() == io::ErrorKind::WouldBlock {
                    Failure::NoReply(self.reply_within)
                } else {
                    Failure::Recv(err)
                }
            })?;
            if read_datagram(&data, seq, &mut replies)? {
                return Ok(replies);
            }
        }
    }
}

/// Adds the messages of one datagram that answer `seq` to `replies`; true once the reply
/// has ended (NLMSG_DONE or the ack).
fn read_datagram<T: NetlinkDeserializable>(
    data: &[u8],
    seq: u32,
    replies: &mut Vec<T>,
) -> Result<bool, Failure> {
    let mut at = 0;
    while at < data.len() {
        let msg = NetlinkMessage::<T>::deserialize(&data[at..])
            .map_err(|e| Failure::Unreadable(format!("unreadable reply: {e}")))?;
        let len = msg.header.length as usize;
        if len == 0 {
            return Err(Failure::Unreadable(
                "unreadable reply: a message of length 0".into(),
            ));
        }
        // Messages in one datagram are 4-byte aligned (NLMSG_ALIGN).
        at += (len + 3) & !3;
        if msg.header.sequence_number != seq {
            continue;
        }
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            // An ack is an error message with no error code.
            NetlinkPayload::Error(e) if e.code.is_none() => return Ok(true),
            NetlinkPayload::Error(e) => return Err(Failure::Refused(e)),
            NetlinkPayload::InnerMessage(m) => replies.push(m),
            _ => {}
        }
    }
    Ok(false)
}

// ---------------------------------------------------------------------------------------
// Attributes and generic netlink, for the families vportd encodes itself.

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The length of `struct genlmsghdr` (cmd, version, reserved).
pub(crate) const GENL_HEADER: usize = 4;

/// Appends one attribute (length, type, payload, padding to 4 bytes) to `out`.
pub(crate) fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// The attributes in `b`: (type without its nested and byte-order flags, payload); None
/// when one overruns the bytes.
pub(crate) fn attrs(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        out.push((kind, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Some(out)
}

/// A generic netlink request: `cmd` (version 1) of `family` with `attributes`.
pub(crate) fn genl(family: u16, cmd: u8, attributes: &[u8]) -> Raw {
    let mut payload = Vec::with_capacity(GENL_HEADER + attributes.len());
    payload.extend_from_slice(&[cmd, 1, 0, 0]);
    payload.extend_from_slice(attributes);
    Raw {
        kind: family,
        payload,
    }
}

/// The id of the generic netlink family `name`; None when the answer names none. A kernel
/// without the family refuses with ENOENT.
pub(crate) fn genl_family(sock: &mut NlSocket, name: &str) -> Result<Option<u16>, Failure> {
    let mut a = Vec::new();
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    put_attr(&mut a, CTRL_ATTR_FAMILY_NAME, &cname);
    let replies = sock.request(genl(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &a), 0)?;
    Ok(replies.iter().find_map(|m| {
        attrs(m.payload.get(GENL_HEADER..)?)?
            .into_iter()
            .find(|(t, p)| *t == CTRL_ATTR_FAMILY_ID && p.len() >= 2)
            .map(|(_, p)| u16::from_ne_bytes([p[0], p[1]]))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller family resolves itself ("nlctrl" is id 0x10 on every kernel), and a
    /// family that does not exist is refused with ENOENT.
    #[test]
    fn generic_families_resolve() {
        let mut s = NlSocket::open(netlink_sys::constants::NETLINK_GENERIC).unwrap();
        assert_eq!(genl_family(&mut s, "nlctrl").unwrap(), Some(GENL_ID_CTRL));
        let e = genl_family(&mut s, "no-such-family").unwrap_err();
        assert_eq!(e.errno(), Errno::ENOENT, "{e:?}");
    }

    #[test]
    fn attributes_round_trip() {
        let mut b = Vec::new();
        put_attr(&mut b, 1, &[7]);
        put_attr(&mut b, 0x8002, &[1, 2, 3, 4]);
        assert_eq!(b.len(), 16);
        let a = attrs(&b).unwrap();
        assert_eq!(a, vec![(1, &[7u8][..]), (2, &[1, 2, 3, 4][..])]);
        b[0] = 200;
        assert_eq!(attrs(&b), None);
    }

    /// Messages of another sequence number are skipped; the ack of ours ends the reply.
    #[test]
    fn a_datagram_is_read_by_sequence() {
        let msg = |kind: u16, seq: u32, body: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(body);
            m
        };
        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&msg(20, 7, &[])[..16]);
        let mut data = msg(20, 6, &[1, 2, 3, 4]);
        data.extend(msg(20, 7, &[5, 6, 7, 8]));
        data.extend(msg(2, 7, &ack));
        let mut got: Vec<Raw> = Vec::new();
        assert!(read_datagram(&data, 7, &mut got).unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, vec![5, 6, 7, 8]);
        let mut refusal = (-libc::ENODEV).to_ne_bytes().to_vec();
        refusal.extend_from_slice(&msg(20, 7, &[])[..16]);
        let e = read_datagram::<Raw>(&msg(2, 7, &refusal), 7, &mut got).unwrap_err();
        assert_eq!(e.errno(), Errno::ENODEV);
    }
}

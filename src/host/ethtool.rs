//! NIC queue controls: channel counts, the RSS indirection table, RSS contexts, ntuple
//! (flow director) rules, offload features, and macvlan devices for VMDq pools.
//!
//! Each control goes through ethtool netlink where the kernel has the message and
//! through the `SIOCETHTOOL` ioctl where it has not: channels are netlink
//! (`ETHTOOL_MSG_CHANNELS_SET`, since 5.6; the ioctl only when the ethtool family is
//! missing), while the indirection table, RSS contexts and ntuple rules are ioctls
//! (`ETHTOOL_MSG_RSS_SET` arrived in 6.17 and the rig's 6.12 has none; ntuple has no
//! netlink message at all). The request encoders are pure functions returning bytes, so
//! tests compare them with what the `ethtool` and `ip` binaries send for the same command
//! (tests/queues_bytes.rs): no driver on the project's machines has RSS contexts, ntuple
//! rules or l2-fwd-offload, and that comparison is what proves those paths.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::nlsock::{self, Failure, NlSocket, Raw, put_attr};
use crate::model::queues::{Feature, FlowRule, FlowTarget, QueueFacts, QueueFeatures, RssTable};
use crate::provision::ops::{EthtoolError, QueueOps};

/// Reads [`QueueFacts`] of a device; each part the driver does not offer is left None.
pub fn queue_facts(dev: &str) -> QueueFacts {
    let mut b = vec![0u8; 36];
    put_u32(&mut b, 0, ETHTOOL_GCHANNELS);
    let ch = ethtool_ioctl(dev, "report its channels", &mut b).ok();
    QueueFacts {
        combined: ch.map(|_| get_u32(&b, 32)).filter(|n| *n > 0),
        combined_max: ch.map(|_| get_u32(&b, 16)).filter(|n| *n > 0),
        rss_table: rss_get(dev, 0)
            .ok()
            .map(|t| t.indir)
            .filter(|t| !t.is_empty()),
        features: features(dev).unwrap_or_default(),
    }
}

/// The real kernel.
#[derive(Debug, Default)]
pub struct LiveQueues;

/// The netdev name of an ifindex now.
pub fn ifname_of(ifindex: u32) -> Result<String, EthtoolError> {
    super::netdev_name(ifindex).map_err(|errno| EthtoolError::Refused {
        dev: format!("ifindex {ifindex}"),
        what: "name the device (it is gone)".into(),
        errno,
    })
}

impl QueueOps for LiveQueues {
    fn facts(&mut self, ifindex: u32) -> Result<QueueFacts, EthtoolError> {
        Ok(queue_facts(&ifname_of(ifindex)?))
    }

    fn set_channels(&mut self, ifindex: u32, combined: u32) -> Result<(), EthtoolError> {
        channels_set(&ifname_of(ifindex)?, combined)
    }

    fn set_rss_table(&mut self, ifindex: u32, indir: &[u32]) -> Result<(), EthtoolError> {
        rss_set(&ifname_of(ifindex)?, indir)
    }

    fn rss_context(&mut self, ifindex: u32, id: u32) -> Result<Option<Vec<u32>>, EthtoolError> {
        match rss_get(&ifname_of(ifindex)?, id) {
            Ok(t) => Ok(Some(t.indir)),
            // The kernel answers ENOENT (6.11+) or EINVAL (drivers before) for an id it
            // does not have.
            Err(EthtoolError::Refused {
                errno: Errno::ENOENT | Errno::EINVAL,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_rss_context(&mut self, ifindex: u32, indir: &[u32]) -> Result<u32, EthtoolError> {
        rss_context_create(&ifname_of(ifindex)?, indir)
    }

    fn delete_rss_context(&mut self, ifindex: u32, id: u32) -> Result<(), EthtoolError> {
        rss_context_delete(&ifname_of(ifindex)?, id)
    }

    fn rule(&mut self, ifindex: u32, location: u32) -> Result<Option<FlowRule>, EthtoolError> {
        ntuple_get(&ifname_of(ifindex)?, location)
    }

    fn insert_rule(&mut self, ifindex: u32, rule: &FlowRule) -> Result<(), EthtoolError> {
        ntuple_insert(&ifname_of(ifindex)?, rule)
    }

    fn delete_rule(&mut self, ifindex: u32, location: u32) -> Result<(), EthtoolError> {
        ntuple_delete(&ifname_of(ifindex)?, location)
    }

    fn set_feature(&mut self, ifindex: u32, name: &str, on: bool) -> Result<(), EthtoolError> {
        feature_set(&ifname_of(ifindex)?, name, on)
    }

    fn create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, EthtoolError> {
        macvlan_create(parent, name, mac)?;
        // The name was only the request's handle: the device is the one on `parent`
        // with `mac`.
        self.find_macvlan(parent, mac)?
            .ok_or_else(|| EthtoolError::Protocol {
                dev: name.into(),
                what: "create a macvlan".into(),
                why: format!("no device on ifindex {parent} has its MAC after creation"),
            })
    }

    fn find_macvlan(&mut self, parent: u32, mac: [u8; 6]) -> Result<Option<u32>, EthtoolError> {
        find_upper_with_mac(parent, mac)
    }

    fn delete_link(&mut self, ifindex: u32) -> Result<(), EthtoolError> {
        link_delete(ifindex)
    }
}

/// The device stacked on `parent` (sysfs `iflink`) whose MAC is `mac`.
fn find_upper_with_mac(parent: u32, mac: [u8; 6]) -> Result<Option<u32>, EthtoolError> {
    let want = crate::model::mac::Mac(mac).to_string();
    let dir = std::fs::read_dir("/sys/class/net").map_err(|e| EthtoolError::Protocol {
        dev: format!("ifindex {parent}"),
        what: "list network devices".into(),
        why: e.to_string(),
    })?;
    for entry in dir.flatten() {
        let p = entry.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let ifindex: u32 = read("ifindex").trim().parse().unwrap_or(0);
        let iflink: u32 = read("iflink").trim().parse().unwrap_or(0);
        if ifindex != 0
            && ifindex != parent
            && iflink == parent
            && read("address").trim().eq_ignore_ascii_case(&want)
        {
            return Ok(Some(ifindex));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------
// Encoders (pure). Layouts are those of <linux/ethtool.h>, native endian as the ioctl
// takes them; network-order fields (MACs, VLAN tags) as the header says.

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;
const ETHTOOL_GRXRINGS: u32 = 0x2d;
const ETHTOOL_GRXCLSRULE: u32 = 0x2f;
const ETHTOOL_SRXCLSRLDEL: u32 = 0x31;
const ETHTOOL_SRXCLSRLINS: u32 = 0x32;
const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_SRSSH: u32 = 0x47;
/// `rss_context` value that asks the driver for a new context.
pub const ETH_RXFH_CONTEXT_ALLOC: u32 = 0xffff_ffff;
const ETHER_FLOW: u32 = 0x12;
const FLOW_EXT: u32 = 0x8000_0000;
const FLOW_RSS: u32 = 0x2000_0000;
const FLOW_MAC_EXT: u32 = 0x4000_0000;
/// `struct ethtool_rxfh` without its table.
const RXFH_HEADER: usize = 24;
/// `sizeof(struct ethtool_rxnfc)` on 64-bit Linux.
const RXNFC_SIZE: usize = 192;
/// Offsets in `struct ethtool_rxnfc` (fs = `struct ethtool_rx_flow_spec` at 16).
const FS: usize = 16;
const FS_H_U: usize = FS + 4;
const FS_H_EXT: usize = FS_H_U + 52;
const FS_M_U: usize = FS_H_EXT + 20;
const FS_M_EXT: usize = FS_M_U + 52;
const FS_RING_COOKIE: usize = FS + 152;
const FS_LOCATION: usize = FS + 160;
const RXNFC_RSS_CONTEXT: usize = FS + 168;

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// `ETHTOOL_SRSSH`: set the indirection table of `context` (0: the main table;
/// [`ETH_RXFH_CONTEXT_ALLOC`]: a new context). An empty `indir` on context 0 resets the
/// table to the driver's default; on another context it deletes that context.
pub fn rxfh_set_request(context: u32, indir: &[u32]) -> Vec<u8> {
    let mut b = vec![0u8; RXFH_HEADER + indir.len() * 4];
    put_u32(&mut b, 0, ETHTOOL_SRSSH);
    put_u32(&mut b, 4, context);
    put_u32(&mut b, 8, indir.len() as u32);
    for (i, q) in indir.iter().enumerate() {
        put_u32(&mut b, RXFH_HEADER + i * 4, *q);
    }
    b
}

/// `ETHTOOL_SRXCLSRLINS` for an Ethernet rule on destination MAC (and VLAN id, PCP and
/// DEI ignored), as `ethtool -N DEV flow-type ether dst MAC [vlan V m 0xf000]
/// {action Q | context C} loc L` sends it, except the `data` field, which ethtool fills
/// with a leftover of its argument parsing and the kernel does not read for this command
/// (vportd sends 0).
pub fn ntuple_insert_request(rule: &FlowRule) -> Vec<u8> {
    let mut b = vec![0u8; RXNFC_SIZE];
    put_u32(&mut b, 0, ETHTOOL_SRXCLSRLINS);
    let mut flow_type = ETHER_FLOW;
    if rule.vlan.is_some() {
        flow_type |= FLOW_EXT;
    }
    if matches!(rule.target, FlowTarget::Context { .. }) {
        flow_type |= FLOW_RSS;
    }
    put_u32(&mut b, FS, flow_type);
    // ether_spec: h_dest, h_source, h_proto; only the destination is matched.
    b[FS_H_U..FS_H_U + 6].copy_from_slice(&rule.dst_mac);
    b[FS_M_U..FS_M_U + 6].copy_from_slice(&[0xff; 6]);
    if let Some(vid) = rule.vlan {
        // ethtool_flow_ext: padding[2], h_dest[6], vlan_etype, vlan_tci, data[2].
        b[FS_H_EXT + 10..FS_H_EXT + 12].copy_from_slice(&vid.to_be_bytes());
        b[FS_M_EXT + 10..FS_M_EXT + 12].copy_from_slice(&0x0fffu16.to_be_bytes());
    }
    let cookie: u64 = match rule.target {
        FlowTarget::Queue { index } => index,
        FlowTarget::Context { .. } => 0,
    };
    b[FS_RING_COOKIE..FS_RING_COOKIE + 8].copy_from_slice(&cookie.to_ne_bytes());
    put_u32(&mut b, FS_LOCATION, rule.location);
    if let FlowTarget::Context { id } = rule.target {
        put_u32(&mut b, RXNFC_RSS_CONTEXT, id);
    }
    b
}

/// `ETHTOOL_GRXCLSRULE` for the rule at `location` (`ethtool -n DEV rule L`).
pub fn ntuple_get_request(location: u32) -> Vec<u8> {
    let mut b = vec![0u8; RXNFC_SIZE];
    put_u32(&mut b, 0, ETHTOOL_GRXCLSRULE);
    put_u32(&mut b, FS_LOCATION, location);
    b
}

/// Reads back a rule the way [`ntuple_insert_request`] writes one; None for a rule of
/// another shape (not an Ethernet destination-MAC rule), which vportd did not write.
pub fn ntuple_decode(b: &[u8]) -> Option<FlowRule> {
    if b.len() < RXNFC_SIZE {
        return None;
    }
    let flow_type = get_u32(b, FS);
    if flow_type & !(FLOW_EXT | FLOW_RSS | FLOW_MAC_EXT) != ETHER_FLOW {
        return None;
    }
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&b[FS_H_U..FS_H_U + 6]);
    let vlan = (flow_type & FLOW_EXT != 0)
        .then(|| u16::from_be_bytes([b[FS_H_EXT + 10], b[FS_H_EXT + 11]]) & 0x0fff);
    let cookie = u64::from_ne_bytes(b[FS_RING_COOKIE..FS_RING_COOKIE + 8].try_into().ok()?);
    let target = if flow_type & FLOW_RSS != 0 {
        FlowTarget::Context {
            id: get_u32(b, RXNFC_RSS_CONTEXT),
        }
    } else {
        FlowTarget::Queue { index: cookie }
    };
    Some(FlowRule {
        dst_mac,
        vlan,
        location: get_u32(b, FS_LOCATION),
        target,
    })
}

/// `ETHTOOL_SRXCLSRLDEL` (`ethtool -N DEV delete L`).
pub fn ntuple_delete_request(location: u32) -> Vec<u8> {
    let mut b = vec![0u8; RXNFC_SIZE];
    put_u32(&mut b, 0, ETHTOOL_SRXCLSRLDEL);
    put_u32(&mut b, FS_LOCATION, location);
    b
}

fn nest(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    put_attr(out, kind | 0x8000, inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn nlmsg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + payload.len());
    b.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(payload);
    b
}

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_MSG_CHANNELS_SET: u8 = 18;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_HEADER_FLAGS: u16 = 3;

fn ethtool_header(dev: &str, flags: Option<u32>) -> Vec<u8> {
    let mut h = Vec::new();
    put_attr(&mut h, ETHTOOL_A_HEADER_DEV_NAME, &cstr(dev));
    if let Some(f) = flags {
        put_attr(&mut h, ETHTOOL_A_HEADER_FLAGS, &f.to_ne_bytes());
    }
    h
}

/// `ETHTOOL_MSG_CHANNELS_SET` of the combined count, as `ethtool -L DEV combined N`
/// sends it (`family` is the ethtool generic netlink family id).
pub fn channels_set_request(family: u16, seq: u32, dev: &str, combined: u32) -> Vec<u8> {
    let mut p = vec![ETHTOOL_MSG_CHANNELS_SET, 1, 0, 0];
    nest(&mut p, 1, &ethtool_header(dev, None));
    put_attr(&mut p, 9, &combined.to_ne_bytes());
    nlmsg(family, NLM_F_REQUEST | NLM_F_ACK, seq, &p)
}

/// `ETHTOOL_MSG_FEATURES_SET` of one feature by name, as `ethtool -K DEV NAME on|off`
/// sends it (compact bitsets asked for in the header, the wanted bit by name).
pub fn feature_set_request(family: u16, seq: u32, dev: &str, name: &str, on: bool) -> Vec<u8> {
    let mut p = vec![ETHTOOL_MSG_FEATURES_SET, 1, 0, 0];
    nest(&mut p, 1, &ethtool_header(dev, Some(1)));
    let mut bit = Vec::new();
    put_attr(&mut bit, 2, &cstr(name));
    if on {
        put_attr(&mut bit, 3, &[]);
    }
    let mut bits = Vec::new();
    nest(&mut bits, 1, &bit);
    let mut bitset = Vec::new();
    nest(&mut bitset, 3, &bits);
    nest(&mut p, 3, &bitset);
    nlmsg(family, NLM_F_REQUEST | NLM_F_ACK, seq, &p)
}

/// `RTM_NEWLINK` for a macvlan in bridge mode on `parent` with the vPort's MAC, as
/// `ip link add link PARENT name NAME address MAC type macvlan mode bridge` sends it.
/// With `l2-fwd-offload` on the parent, the driver gives the macvlan a VMDq pool of its
/// own (ixgbe, i40e); without it the macvlan is a software device.
pub fn macvlan_request(seq: u32, parent: u32, name: &str, mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![0u8; 16]; // ifinfomsg: family, pad, type, index, flags, change
    put_attr(&mut p, 1, &mac); // IFLA_ADDRESS
    put_attr(&mut p, 5, &parent.to_ne_bytes()); // IFLA_LINK
    put_attr(&mut p, 3, &cstr(name)); // IFLA_IFNAME
    let mut info = Vec::new();
    put_attr(&mut info, 1, b"macvlan"); // IFLA_INFO_KIND, unterminated as ip sends it
    let mut data = Vec::new();
    put_attr(&mut data, 1, &4u32.to_ne_bytes()); // IFLA_MACVLAN_MODE = MACVLAN_MODE_BRIDGE
    // IFLA_INFO_DATA and IFLA_LINKINFO: iproute2 sets no NLA_F_NESTED flag on either,
    // and rtnetlink does not ask for it.
    put_attr(&mut info, 2, &data);
    put_attr(&mut p, 18, &info);
    nlmsg(
        16,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
        seq,
        &p,
    )
}

/// `RTM_DELLINK` of one device by ifindex (`ip link del` resolves the name to the same).
pub fn link_delete_request(seq: u32, ifindex: u32) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    nlmsg(17, NLM_F_REQUEST | NLM_F_ACK, seq, &p)
}

/// Sends one rtnetlink request, encoded whole by `encode` with the socket's sequence
/// number, and waits for its ack.
fn rtnl_request(
    what: &str,
    dev: &str,
    encode: impl FnOnce(u32) -> Vec<u8>,
) -> Result<(), EthtoolError> {
    let mut sock = NlSocket::open(netlink_sys::constants::NETLINK_ROUTE)
        .map_err(|e| socket_error(dev, "reach rtnetlink", e))?;
    let req = encode(sock.next_seq());
    exchange(&mut sock, dev, what, &req)
}

/// Creates a macvlan in bridge mode (`ip link add link PARENT name NAME address MAC type
/// macvlan mode bridge`).
pub fn macvlan_create(parent: u32, name: &str, mac: [u8; 6]) -> Result<(), EthtoolError> {
    rtnl_request("create a macvlan", name, |seq| {
        macvlan_request(seq, parent, name, mac)
    })
}

/// Deletes a device by ifindex.
pub fn link_delete(ifindex: u32) -> Result<(), EthtoolError> {
    rtnl_request("delete the device", &format!("ifindex {ifindex}"), |seq| {
        link_delete_request(seq, ifindex)
    })
}

// ---------------------------------------------------------------------------------------
// The ioctl.

/// `dev` as the kernel's fixed-size interface name, refused when it cannot be one.
pub(crate) fn ifname(dev: &str) -> Result<[libc::c_char; libc::IFNAMSIZ], EthtoolError> {
    let c = CString::new(dev).map_err(|_| EthtoolError::BadName { dev: dev.into() })?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ || bytes.len() < 2 {
        return Err(EthtoolError::BadName { dev: dev.into() });
    }
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(name)
}

fn dgram_socket(dev: &str, what: &'static str) -> Result<OwnedFd, EthtoolError> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use and
    // owned by the OwnedFd from then on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(EthtoolError::Socket {
            dev: dev.into(),
            what,
            errno: Errno::last(),
        });
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one `SIOCETHTOOL` request whose command struct is `buf` (the kernel reads and
/// writes it in place).
fn ethtool_ioctl(dev: &str, what: &str, buf: &mut [u8]) -> Result<(), EthtoolError> {
    let sock = dgram_socket(dev, "send an ethtool request")?;
    siocethtool(&sock, ifname(dev)?, buf).map_err(|errno| EthtoolError::Refused {
        dev: dev.into(),
        what: what.into(),
        errno,
    })
}

/// One `SIOCETHTOOL` request on `sock` (any socket; the driver statistics keep one) for the
/// netdev `name`, whose command struct is `buf`, sized by the caller for the command in its
/// first four bytes and the counts it put there.
pub(crate) fn siocethtool(
    sock: &OwnedFd,
    name: [libc::c_char; libc::IFNAMSIZ],
    buf: &mut [u8],
) -> Result<(), Errno> {
    let mut req: libc::ifreq = {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    };
    req.ifr_name = name;
    req.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: req names the device and points at `buf`, which is as large as the command
    // in its first four bytes needs (the callers size it from the same header), and
    // outlives the call; the kernel copies in and out of it only during the ioctl.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCETHTOOL as _,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The number of receive rings RSS spreads over (`ETHTOOL_GRXRINGS`).
pub fn rx_rings(dev: &str) -> Result<u32, EthtoolError> {
    let mut b = vec![0u8; RXNFC_SIZE];
    put_u32(&mut b, 0, ETHTOOL_GRXRINGS);
    ethtool_ioctl(dev, "report its receive ring count", &mut b)?;
    Ok(u64::from_ne_bytes(b[8..16].try_into().expect("8 bytes")) as u32)
}

/// The indirection table of `context` (0: main), through `ETHTOOL_GRSSH` twice: sizes
/// first, then the table.
pub fn rss_get(dev: &str, context: u32) -> Result<RssTable, EthtoolError> {
    let what = "report its RSS indirection table";
    let mut head = vec![0u8; RXFH_HEADER];
    put_u32(&mut head, 0, ETHTOOL_GRSSH);
    put_u32(&mut head, 4, context);
    ethtool_ioctl(dev, what, &mut head)?;
    let size = get_u32(&head, 8);
    let key_size = get_u32(&head, 12);
    if size > 1 << 16 || key_size > 1 << 12 {
        return Err(EthtoolError::Protocol {
            dev: dev.into(),
            what: what.into(),
            why: format!("a table of {size} entries and a key of {key_size} bytes"),
        });
    }
    let mut b = vec![0u8; RXFH_HEADER + size as usize * 4 + key_size as usize];
    b[..RXFH_HEADER].copy_from_slice(&head);
    ethtool_ioctl(dev, what, &mut b)?;
    let indir = (0..size as usize)
        .map(|i| get_u32(&b, RXFH_HEADER + i * 4))
        .collect();
    Ok(RssTable {
        context,
        indir,
        key_size,
    })
}

/// Sets the main indirection table (`ethtool -X DEV equal N` / `weight ...`).
pub fn rss_set(dev: &str, indir: &[u32]) -> Result<(), EthtoolError> {
    let mut b = rxfh_set_request(0, indir);
    ethtool_ioctl(dev, "set its RSS indirection table", &mut b)
}

/// Creates an RSS context over `indir` (`ethtool -X DEV context new ...`); returns its id.
pub fn rss_context_create(dev: &str, indir: &[u32]) -> Result<u32, EthtoolError> {
    let mut b = rxfh_set_request(ETH_RXFH_CONTEXT_ALLOC, indir);
    ethtool_ioctl(dev, "create an RSS context", &mut b)?;
    Ok(get_u32(&b, 4))
}

/// Deletes an RSS context (`ethtool -X DEV context C delete`).
pub fn rss_context_delete(dev: &str, context: u32) -> Result<(), EthtoolError> {
    let mut b = rxfh_set_request(context, &[]);
    ethtool_ioctl(dev, &format!("delete RSS context {context}"), &mut b)
}

/// Inserts a steering rule (`ethtool -N DEV flow-type ether dst MAC ...`).
pub fn ntuple_insert(dev: &str, rule: &FlowRule) -> Result<(), EthtoolError> {
    let mut b = ntuple_insert_request(rule);
    ethtool_ioctl(dev, "insert a flow rule", &mut b)
}

/// The rule at `location`, or None when the slot is empty (ENOENT, or EINVAL from
/// drivers that say so for an unused slot).
pub fn ntuple_get(dev: &str, location: u32) -> Result<Option<FlowRule>, EthtoolError> {
    let mut b = ntuple_get_request(location);
    match ethtool_ioctl(dev, &format!("report flow rule {location}"), &mut b) {
        Ok(()) => Ok(ntuple_decode(&b)),
        Err(EthtoolError::Refused {
            errno: Errno::ENOENT | Errno::EINVAL,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the steering rule at `location` (`ethtool -N DEV delete L`).
pub fn ntuple_delete(dev: &str, location: u32) -> Result<(), EthtoolError> {
    let mut b = ntuple_delete_request(location);
    ethtool_ioctl(dev, &format!("delete flow rule {location}"), &mut b)
}

fn channels_ioctl(dev: &str, set: Option<u32>) -> Result<u32, EthtoolError> {
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx, tx,
    // other, combined.
    let mut b = vec![0u8; 36];
    put_u32(&mut b, 0, ETHTOOL_GCHANNELS);
    ethtool_ioctl(dev, "report its channels", &mut b)?;
    if let Some(n) = set {
        put_u32(&mut b, 0, ETHTOOL_SCHANNELS);
        put_u32(&mut b, 32, n);
        ethtool_ioctl(dev, &format!("set {n} combined channels"), &mut b)?;
        return Ok(n);
    }
    Ok(get_u32(&b, 32))
}

// ---------------------------------------------------------------------------------------
// Generic netlink, for the ethtool family (requests vportd encodes itself).

/// A generic netlink socket resolved to the ethtool family.
struct Genl {
    sock: NlSocket,
    family: u16,
}

impl Genl {
    /// None when the kernel has no ethtool netlink family (CONFIG_ETHTOOL_NETLINK off).
    fn open(dev: &str) -> Result<Option<Genl>, EthtoolError> {
        let what = "look up the ethtool netlink family";
        let mut sock = NlSocket::open(netlink_sys::constants::NETLINK_GENERIC)
            .map_err(|e| socket_error(dev, "reach ethtool netlink", e))?;
        match nlsock::genl_family(&mut sock, "ethtool") {
            Ok(Some(family)) => Ok(Some(Genl { sock, family })),
            Ok(None) => Err(EthtoolError::Protocol {
                dev: dev.into(),
                what: what.into(),
                why: "no family id in the answer".into(),
            }),
            Err(f) if f.errno() == Errno::ENOENT => Ok(None),
            Err(f) => Err(failed(dev, what, f)),
        }
    }

    /// Sends the request `encode` makes of the family id and a sequence number, and waits
    /// for its ack.
    fn request(
        &mut self,
        dev: &str,
        what: &str,
        encode: impl FnOnce(u16, u32) -> Vec<u8>,
    ) -> Result<(), EthtoolError> {
        let req = encode(self.family, self.sock.next_seq());
        exchange(&mut self.sock, dev, what, &req)
    }
}

/// One request encoded whole and its reply, through the kernel layer's request loop; the
/// reply's messages are not needed, only whether the kernel accepted.
fn exchange(sock: &mut NlSocket, dev: &str, what: &str, req: &[u8]) -> Result<(), EthtoolError> {
    sock.exchange::<Raw>(req)
        .map(|_| ())
        .map_err(|f| failed(dev, what, f))
}

/// A failed exchange as this module says it: the kernel refused `what` on `dev` (a read
/// that timed out as EAGAIN), or answered what does not parse.
fn failed(dev: &str, what: &str, f: Failure) -> EthtoolError {
    match f {
        Failure::Unreadable(why) => EthtoolError::Protocol {
            dev: dev.into(),
            what: what.into(),
            why,
        },
        f => EthtoolError::Refused {
            dev: dev.into(),
            what: what.into(),
            errno: f.errno(),
        },
    }
}

fn socket_error(dev: &str, what: &'static str, e: std::io::Error) -> EthtoolError {
    EthtoolError::Socket {
        dev: dev.into(),
        what,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The combined channel count (`ethtool -l`), through the `ETHTOOL_GCHANNELS` ioctl
/// (discovery reads channels over netlink; this is apply's read-back).
pub fn channels_combined(dev: &str) -> Result<u32, EthtoolError> {
    channels_ioctl(dev, None)
}

/// Sets the combined channel count (`ethtool -L DEV combined N`): ethtool netlink
/// `CHANNELS_SET`, or the `ETHTOOL_SCHANNELS` ioctl on kernels without ethtool netlink.
/// Drivers re-create their queue interrupts: IRQ numbers and affinities change.
pub fn channels_set(dev: &str, combined: u32) -> Result<(), EthtoolError> {
    match Genl::open(dev)? {
        Some(mut g) => g.request(
            dev,
            &format!("set {combined} combined channels"),
            |family, seq| channels_set_request(family, seq, dev, combined),
        ),
        None => channels_ioctl(dev, Some(combined)).map(|_| ()),
    }
}

/// Turns one feature on or off (`ethtool -K DEV NAME on|off`) and reports whether the
/// device now has it as asked: drivers accept the request and leave a `[fixed]` feature
/// as it was, which only a read-back shows.
pub fn feature_set(dev: &str, name: &str, on: bool) -> Result<(), EthtoolError> {
    let Some(mut g) = Genl::open(dev)? else {
        return Err(EthtoolError::Refused {
            dev: dev.into(),
            what: format!("set {name} (no ethtool netlink in this kernel)"),
            errno: Errno::EOPNOTSUPP,
        });
    };
    g.request(
        dev,
        &format!("turn {name} {}", if on { "on" } else { "off" }),
        |family, seq| feature_set_request(family, seq, dev, name, on),
    )?;
    let now = features(dev)?;
    let got = match name {
        "l2-fwd-offload" => now.l2_fwd_offload,
        "rx-ntuple-filter" | "ntuple" => now.ntuple,
        _ => None,
    };
    if got.is_some_and(|f| f.active != on) {
        return Err(EthtoolError::Refused {
            dev: dev.into(),
            what: format!(
                "turn {name} {} ({})",
                if on { "on" } else { "off" },
                if got.is_some_and(|f| !f.changeable) {
                    "the driver marks it fixed"
                } else {
                    "it reads back unchanged"
                }
            ),
            errno: Errno::EOPNOTSUPP,
        });
    }
    Ok(())
}

/// The queue-related features of a device (`ethtool -k`), over ethtool netlink.
pub fn features(dev: &str) -> Result<QueueFeatures, EthtoolError> {
    super::block_on(features_async(dev))
}

async fn features_async(dev: &str) -> Result<QueueFeatures, EthtoolError> {
    let (conn, handle, _) = ::ethtool::new_connection().map_err(|e| EthtoolError::Socket {
        dev: dev.into(),
        what: "read features",
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    super::with_connection(conn, features_of(dev, handle)).await
}

/// ntuple and l2-fwd-offload as the `ethtool` family reports them.
async fn features_of(
    dev: &str,
    mut handle: ::ethtool::EthtoolHandle,
) -> Result<QueueFeatures, EthtoolError> {
    use ::ethtool::{EthtoolAttr, EthtoolFeatureAttr};
    use futures::TryStreamExt;
    let stream = handle
        .feature()
        .get(Some(dev))
        .execute()
        .await
        .map_err(|e| EthtoolError::Protocol {
            dev: dev.into(),
            what: "read features".into(),
            why: e.to_string(),
        })?;
    futures::pin_mut!(stream);
    let mut out = QueueFeatures::default();
    let mut hw: Vec<(String, bool)> = Vec::new();
    let mut active: Vec<(String, bool)> = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| EthtoolError::Protocol {
            dev: dev.into(),
            what: "read features".into(),
            why: e.to_string(),
        })?
    {
        for nla in &msg.payload.nlas {
            match nla {
                EthtoolAttr::Feature(EthtoolFeatureAttr::Hw(bits)) => {
                    hw.extend(bits.iter().map(|b| (b.name.clone(), b.value)))
                }
                EthtoolAttr::Feature(EthtoolFeatureAttr::Active(bits)) => {
                    active.extend(bits.iter().map(|b| (b.name.clone(), b.value)))
                }
                _ => {}
            }
        }
    }
    let state = |name: &str| -> Option<Feature> {
        let changeable = hw.iter().any(|(n, v)| n == name && *v);
        let on = active.iter().any(|(n, v)| n == name && *v);
        let known = hw.iter().chain(active.iter()).any(|(n, _)| n == name);
        known.then_some(Feature {
            active: on,
            changeable,
        })
    };
    out.ntuple = state("rx-ntuple-filter").or(Some(Feature {
        active: false,
        changeable: false,
    }));
    out.l2_fwd_offload = state("l2-fwd-offload").or(Some(Feature {
        active: false,
        changeable: false,
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::queues::{equal_table, weighted_table};

    #[test]
    fn tables_follow_ethtool() {
        assert_eq!(equal_table(8, 0, 3), vec![0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(equal_table(4, 4, 2), vec![4, 5, 4, 5]);
        // ethtool -X weight 1 2 3 over 128 buckets gives 21/43/64 (tests/queues_bytes.rs
        // compares the whole table with ethtool's).
        let t = weighted_table(128, 0, &[1, 2, 3]).unwrap();
        let count = |q| t.iter().filter(|x| **x == q).count();
        assert_eq!((count(0), count(1), count(2)), (21, 43, 64));
        assert_eq!(weighted_table(8, 0, &[0, 0]), None);
        // A zero weight leaves its queue out.
        assert!(!weighted_table(16, 0, &[1, 0, 1]).unwrap().contains(&1));
    }

    #[test]
    fn rxfh_header_layout() {
        let b = rxfh_set_request(ETH_RXFH_CONTEXT_ALLOC, &[1, 2]);
        assert_eq!(b.len(), 32);
        assert_eq!(&b[..4], &0x47u32.to_ne_bytes());
        assert_eq!(&b[4..8], &[0xff; 4]);
        assert_eq!(get_u32(&b, 8), 2);
        assert_eq!(get_u32(&b, 28), 2);
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    /// The ethtool family is looked up and its refusal read through the shared request
    /// loop: loopback has no channels to set (nothing changes on this machine).
    #[test]
    fn a_refused_channels_set_names_the_request() {
        let e = channels_set("lo", 1).unwrap_err();
        assert!(
            matches!(&e, EthtoolError::Refused { dev, what, errno: Errno::EOPNOTSUPP | Errno::EPERM }
                if dev == "lo" && what == "set 1 combined channels"),
            "{e:?}"
        );
    }

    /// The rtnetlink side: no device has this ifindex, so the deletion is refused.
    #[test]
    fn a_refused_link_delete_names_the_device() {
        let e = link_delete(0x7fff_fff0).unwrap_err();
        assert!(
            matches!(&e, EthtoolError::Refused { dev, errno: Errno::ENODEV | Errno::EPERM, .. }
                if dev == "ifindex 2147483632"),
            "{e:?}"
        );
    }

    /// Features are read on the kernel layer's one runtime, from several threads at once
    /// and again afterwards (each call's connection dropped with it).
    #[test]
    fn features_read_from_several_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| features("lo")))
            .collect();
        for t in threads {
            let f = t.join().unwrap().expect("loopback's features read");
            assert_eq!(f.ntuple.map(|f| f.active), Some(false));
        }
        assert!(features("lo").is_ok());
    }
}

//! rtnetlink and ethtool-netlink reads, reduced to plain serializable snapshots.
//!
//! The snapshot types are what the rest of vportd sees of netlink. They serialize to
//! JSON so that a capture from a real kernel (`discover --record`) replays in unit
//! tests without a socket.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkInfo, LinkMessage, State, VfInfo, VfLinkState, VfVlan,
    VlanProtocol,
};
use serde::{Deserialize, Serialize};

use super::nlsock::{Failure, NlSocket};
use crate::model::mac::{Mac, link_address_text};
use crate::model::vf::VfConfig;
use crate::model::vf::{LinkState, VlanProto};

/// Errors from netlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened (no netlink in this namespace, or no permission).
    #[error("cannot open a {family} netlink socket: {source}")]
    Socket {
        family: &'static str,
        source: std::io::Error,
    },
    /// Sending a request or reading its reply failed on an open socket.
    #[error("the route netlink socket failed while trying to {what}: {source}")]
    Exchange {
        what: String,
        source: std::io::Error,
    },
    /// The kernel answered a request with an error, or with a reply we cannot read.
    #[error("the kernel refused to {what}: {message}")]
    Request { what: String, message: String },
}

/// One network interface as rtnetlink reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSnapshot {
    pub ifindex: u32,
    pub name: String,
    pub mac: Option<String>,
    pub perm_mac: Option<String>,
    pub mtu: Option<u32>,
    pub operstate: String,
    /// `IFLA_INFO_KIND` (veth, bridge, tun, ...); None for plain hardware links.
    pub kind: Option<String>,
    pub num_tx_queues: Option<u32>,
    pub num_rx_queues: Option<u32>,
    /// `IFLA_NUM_VF`: present only on SR-IOV capable PFs with VFs enabled.
    pub num_vf: Option<u32>,
    pub vfs: Vec<VfConfig>,
    /// `IFLA_PARENT_DEV_NAME`, e.g. a PCI address, when the kernel reports one.
    pub parent_dev: Option<String>,
    pub parent_bus: Option<String>,
    /// IFF_UP: administratively up (`ip link set ... up`). None in snapshots recorded before
    /// it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_up: Option<bool>,
}

use crate::model::inventory::Channels;

/// Everything discovery needs from netlink, in one serializable value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetlinkSnapshot {
    pub links: Vec<LinkSnapshot>,
    /// Channels by ifindex, for the links whose driver answers ETHTOOL_MSG_CHANNELS_GET.
    pub channels: BTreeMap<u32, Channels>,
    /// devlink eswitch modes by device (`pci/0000:01:00.0`, `netdevsim/netdevsim10`), for
    /// the devices whose driver has an eswitch ([`super::devlink`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eswitch: BTreeMap<String, crate::model::inventory::EswitchMode>,
}

impl NetlinkSnapshot {
    pub fn link(&self, ifindex: u32) -> Option<&LinkSnapshot> {
        self.links.iter().find(|l| l.ifindex == ifindex)
    }
}

/// Takes a snapshot of every link (with VF info) and every link's channels.
pub fn snapshot() -> Result<NetlinkSnapshot, NetlinkError> {
    snapshot_scoped(true)
}

/// [`snapshot`], with ethtool channels only when asked for (provisioning needs none).
pub fn snapshot_scoped(channels: bool) -> Result<NetlinkSnapshot, NetlinkError> {
    // Without channels, one dump on a plain socket says it all: no async runtime to start,
    // which is a good part of a short command's time on a slow host.
    if !channels {
        return Ok(NetlinkSnapshot {
            links: dump_links_blocking()?,
            channels: BTreeMap::new(),
            eswitch: eswitch_modes()?,
        });
    }
    let links = dump_links_blocking()?;
    let channels = super::block_on(dump_channels())?;
    Ok(NetlinkSnapshot {
        links,
        channels,
        eswitch: eswitch_modes()?,
    })
}

/// [`super::devlink::eswitch_modes`], its failure as this module's.
fn eswitch_modes() -> Result<BTreeMap<String, crate::model::inventory::EswitchMode>, NetlinkError> {
    super::devlink::eswitch_modes().map_err(|e| NetlinkError::Request {
        what: "read the devlink eswitch modes".into(),
        message: e.to_string(),
    })
}

/// RTM_GETLINK as a dump. SkipStats keeps big PFs' replies small; the Vf mask is what makes
/// the kernel include IFLA_VFINFO_LIST at all.
fn dump_links_blocking() -> Result<Vec<LinkSnapshot>, NetlinkError> {
    let mut get = LinkMessage::default();
    get.attributes.push(LinkAttribute::ExtMask(vec![
        LinkExtentMask::Vf,
        LinkExtentMask::SkipStats,
    ]));
    let replies = request_blocking(
        "list network links",
        RouteNetlinkMessage::GetLink(get),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(link_from_message(l)),
            _ => None,
        })
        .collect())
}

/// Sends one rtnetlink request on a blocking socket of its own ([`super::nlsock`]) and
/// returns the messages of the reply. With `NLM_F_DUMP` in `flags` the reply is read up to
/// NLMSG_DONE; otherwise the kernel is asked to ack, and the reply ends there (a change
/// returns no messages). An NLMSG_ERROR becomes [`NetlinkError::Request`] naming `what`.
pub(crate) fn request_blocking(
    what: &str,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
    let mut sock = NlSocket::open(netlink_sys::constants::NETLINK_ROUTE).map_err(|source| {
        NetlinkError::Socket {
            family: "route",
            source,
        }
    })?;
    sock.request(msg, flags).map_err(|failure| match failure {
        Failure::Refused(e) => NetlinkError::Request {
            what: what.to_string(),
            message: e.to_string(),
        },
        Failure::Unreadable(message) => NetlinkError::Request {
            what: what.to_string(),
            message,
        },
        other => NetlinkError::Exchange {
            what: what.to_string(),
            source: other.into_io(),
        },
    })
}

async fn dump_channels() -> Result<BTreeMap<u32, Channels>, NetlinkError> {
    let (conn, handle, _) = ethtool::new_connection().map_err(|source| NetlinkError::Socket {
        family: "ethtool generic",
        source,
    })?;
    Ok(super::with_connection(conn, channels_of(handle)).await)
}

/// Every link's channels, as far as the kernel answers.
async fn channels_of(mut handle: ethtool::EthtoolHandle) -> BTreeMap<u32, Channels> {
    use ethtool::{EthtoolAttr, EthtoolChannelAttr, EthtoolHeader};
    let mut out = BTreeMap::new();
    let stream = match handle.channel().get(None).execute().await {
        Ok(s) => s,
        // Kernels without ETHTOOL_NETLINK: no channel data, not a failure.
        Err(_) => return out,
    };
    futures::pin_mut!(stream);
    while let Ok(Some(msg)) = stream.try_next().await {
        let mut ifindex = None;
        let mut ch = Channels::default();
        for nla in &msg.payload.nlas {
            if let EthtoolAttr::Channel(attr) = nla {
                match attr {
                    EthtoolChannelAttr::Header(hdrs) => {
                        for h in hdrs {
                            if let EthtoolHeader::DevIndex(i) = h {
                                ifindex = Some(*i);
                            }
                        }
                    }
                    EthtoolChannelAttr::RxCount(v) => ch.rx = Some(*v),
                    EthtoolChannelAttr::TxCount(v) => ch.tx = Some(*v),
                    EthtoolChannelAttr::OtherCount(v) => ch.other = Some(*v),
                    EthtoolChannelAttr::CombinedCount(v) => ch.combined = Some(*v),
                    EthtoolChannelAttr::RxMax(v) => ch.rx_max = Some(*v),
                    EthtoolChannelAttr::TxMax(v) => ch.tx_max = Some(*v),
                    EthtoolChannelAttr::OtherMax(v) => ch.other_max = Some(*v),
                    EthtoolChannelAttr::CombinedMax(v) => ch.combined_max = Some(*v),
                    _ => {}
                }
            }
        }
        if let Some(i) = ifindex {
            out.insert(i, ch);
        }
    }
    out
}

/// Reduces an rtnetlink link message to a snapshot.
pub fn link_from_message(msg: &LinkMessage) -> LinkSnapshot {
    let mut l = LinkSnapshot {
        ifindex: msg.header.index,
        name: String::new(),
        mac: None,
        perm_mac: None,
        mtu: None,
        operstate: "unknown".into(),
        kind: None,
        num_tx_queues: None,
        num_rx_queues: None,
        num_vf: None,
        vfs: Vec::new(),
        parent_dev: None,
        parent_bus: None,
        admin_up: Some(
            msg.header
                .flags
                .contains(netlink_packet_route::link::LinkFlags::Up),
        ),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(a) => l.mac = Some(link_address_text(a)),
            LinkAttribute::PermAddress(a) => l.perm_mac = Some(link_address_text(a)),
            LinkAttribute::Mtu(m) => l.mtu = Some(*m),
            LinkAttribute::OperState(s) => l.operstate = operstate_name(s),
            LinkAttribute::NumTxQueues(n) => l.num_tx_queues = Some(*n),
            LinkAttribute::NumRxQueues(n) => l.num_rx_queues = Some(*n),
            LinkAttribute::NumVf(n) => l.num_vf = Some(*n),
            LinkAttribute::ParentDevName(n) => l.parent_dev = Some(n.clone()),
            LinkAttribute::ParentDevBusName(n) => l.parent_bus = Some(n.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            LinkAttribute::VfInfoList(list) => {
                l.vfs = list.iter().filter_map(|v| vf_from_info(&v.0)).collect();
            }
            _ => {}
        }
    }
    l
}

fn vf_from_info(infos: &[VfInfo]) -> Option<VfConfig> {
    let mut vf = None;
    let mut c = VfConfig {
        vf: 0,
        mac: Mac([0; 6]),
        vlan: 0,
        qos: 0,
        vlan_proto: None,
        min_tx_rate: None,
        max_tx_rate: None,
        spoofchk: None,
        trust: None,
        link_state: None,
    };
    for i in infos {
        match i {
            VfInfo::Mac(m) => {
                vf = Some(m.vf_id);
                c.mac = Mac::from_slice(&m.mac[..6]).unwrap_or(Mac([0; 6]));
            }
            VfInfo::Vlan(v) => {
                c.vlan = v.vlan_id;
                c.qos = v.qos;
            }
            VfInfo::VlanList(list) => {
                if let Some(VfVlan::Info(v)) = list.first() {
                    c.vlan_proto = Some(match v.protocol {
                        VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
                        _ => VlanProto::Dot1Q,
                    });
                }
            }
            VfInfo::Rate(r) => {
                c.min_tx_rate = Some(r.min_tx_rate);
                c.max_tx_rate = Some(r.max_tx_rate);
            }
            VfInfo::SpoofCheck(s) => c.spoofchk = Some(s.enabled),
            VfInfo::Trust(t) => c.trust = Some(t.enabled),
            VfInfo::LinkState(s) => {
                c.link_state = Some(match s.state {
                    VfLinkState::Auto => LinkState::Auto,
                    VfLinkState::Enable => LinkState::Enable,
                    VfLinkState::Disable => LinkState::Disable,
                    other => LinkState::Other(u32::from(other)),
                })
            }
            _ => {}
        }
    }
    c.vf = vf?;
    Some(c)
}

fn operstate_name(s: &State) -> String {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::Dormant => "dormant",
        State::Testing => "testing",
        State::LowerLayerDown => "lowerlayerdown",
        State::NotPresent => "notpresent",
        _ => "unknown",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump ends at NLMSG_DONE and carries every link; every namespace has a loopback.
    #[test]
    fn a_dump_returns_the_links_up_to_done() {
        let links = dump_links_blocking().expect("a link dump needs no privilege");
        assert!(
            links.iter().any(|l| l.name == "lo" && l.kind.is_none()),
            "no loopback in {links:?}"
        );
    }

    /// An NLMSG_ERROR ends the exchange as an error naming the request; no device has
    /// ifindex 2147483632 here, so the kernel refuses to delete it (ENODEV as root, EPERM without).
    #[test]
    fn a_refusal_names_the_request_and_the_errno() {
        let mut msg = LinkMessage::default();
        msg.header.index = 0x7fff_fff0;
        let err = request_blocking(
            "delete link ifindex 2147483632",
            RouteNetlinkMessage::DelLink(msg),
            0,
        )
        .expect_err("no such link");
        let NetlinkError::Request { what, message } = &err else {
            panic!("not a refusal: {err}");
        };
        assert_eq!(what, "delete link ifindex 2147483632");
        assert!(
            message.contains("No such device") || message.contains("Operation not permitted"),
            "{message}"
        );
        assert!(
            err.to_string()
                .starts_with("the kernel refused to delete link ifindex 2147483632: "),
            "{err}"
        );
    }
}

//! VLAN filter membership of a netdev. A VF hears a tagged frame only for the VLANs its driver
//! has joined (igbvf asks its PF for a VLAN filter entry per VLAN; untagged frames pass either
//! way), and the kernel joins one for a netdev when an 8021q device is made on it. So the
//! software path's trunk on a VF makes one such device per tagged VLAN it carries, and leaves
//! it down: the join happens when the device is made, and the trunk's packet socket sees the
//! frames before the VLAN device would. Devices are found again by (parent ifindex, VLAN id)
//! through a link dump, so one left behind by a killed daemon is taken over, not duplicated;
//! the name (`vp<parent ifindex>.<vid>`) is only for people.

use std::collections::BTreeMap;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo, LinkMessage,
};

/// Errors joining or leaving a VLAN.
#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    /// The rtnetlink socket could not be used.
    #[error("cannot reach rtnetlink to {what}: {source}")]
    Socket {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the request.
    #[error(
        "the kernel refused to {what}: {message} (a VLAN device needs the 8021q module and CAP_NET_ADMIN)"
    )]
    Refused { what: String, message: String },
}

/// The name of the VLAN device joining `vid` on the netdev with index `parent`.
pub fn device_name(parent: u32, vid: u16) -> String {
    format!("vp{parent}.{vid}")
}

/// Sends one request and collects the links of a dump reply, or waits for the ack.
fn exchange(
    what: &str,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<LinkMessage>, VlanError> {
    let socket = |source| VlanError::Socket {
        what: what.to_string(),
        source,
    };
    let refused = |message: String| VlanError::Refused {
        what: what.to_string(),
        message,
    };
    let mut sock =
        netlink_sys::Socket::new(netlink_sys::constants::NETLINK_ROUTE).map_err(socket)?;
    sock.bind_auto().map_err(socket)?;
    sock.connect(&netlink_sys::SocketAddr::new(0, 0))
        .map_err(socket)?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    sock.send(&buf, 0).map_err(socket)?;
    let mut links = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full().map_err(socket)?;
        let mut at = 0;
        while at < data.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                .map_err(|e| refused(format!("unreadable reply: {e}")))?;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(links),
                // An ack is an error message with code 0.
                NetlinkPayload::Error(e) if e.code.is_none() => return Ok(links),
                NetlinkPayload::Error(e) => return Err(refused(e.to_io().to_string())),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => links.push(l),
                _ => {}
            }
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            at += (len + 3) & !3;
        }
    }
}

/// The VLAN devices on the netdev with index `parent`: VLAN id -> ifindex.
pub fn joined(parent: u32) -> Result<BTreeMap<u16, u32>, VlanError> {
    let links = exchange(
        "list the VLAN devices",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    let mut out = BTreeMap::new();
    for l in links {
        let on_parent = l
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Link(p) if *p == parent));
        if !on_parent {
            continue;
        }
        for a in &l.attributes {
            let LinkAttribute::LinkInfo(infos) = a else {
                continue;
            };
            for i in infos {
                if let LinkInfo::Data(InfoData::Vlan(v)) = i {
                    for x in v {
                        if let InfoVlan::Id(vid) = x {
                            out.insert(*vid, l.header.index);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Joins `vid` on the netdev with index `parent` (an 8021q device on it, left down);
/// returns the device's ifindex. One already there is taken as it is.
pub fn join(parent: u32, vid: u16) -> Result<u32, VlanError> {
    if let Some(ifindex) = joined(parent)?.get(&vid) {
        return Ok(*ifindex);
    }
    let what = format!("join VLAN {vid} on ifindex {parent}");
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Link(parent));
    msg.attributes
        .push(LinkAttribute::IfName(device_name(parent, vid)));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vlan),
        LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(vid)])),
    ]));
    exchange(
        &what,
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )?;
    joined(parent)?
        .get(&vid)
        .copied()
        .ok_or_else(|| VlanError::Refused {
            what,
            message: "the device is not there after it was made".into(),
        })
}

/// Leaves a VLAN: deletes the VLAN device with index `ifindex`.
pub fn leave(ifindex: u32) -> Result<(), VlanError> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    exchange(
        &format!("delete VLAN device ifindex {ifindex}"),
        RouteNetlinkMessage::DelLink(msg),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map(|_| ())
}

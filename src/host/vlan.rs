//! VLAN filter membership of a netdev. A VF hears a tagged frame only for the VLANs its driver
//! has joined (igbvf asks its PF for a VLAN filter entry per VLAN; untagged frames pass either
//! way), and the kernel joins one for a netdev when an 8021q device is made on it. So the
//! software path's trunk on a VF makes one such device per tagged VLAN it carries, and leaves
//! it down: the join happens when the device is made, and the trunk's packet socket sees the
//! frames before the VLAN device would. Devices are found again by (parent ifindex, VLAN id)
//! through a link dump, so one left behind by a killed daemon is taken over, not duplicated;
//! the name (`vp<parent ifindex>.<vid>`) is only for people.

use std::collections::BTreeMap;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo, LinkMessage,
};

use super::netlink::{NetlinkError, request_blocking};

/// Errors joining or leaving a VLAN.
#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    /// Listing the VLAN devices or deleting one failed (no socket, or the kernel refused).
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The kernel would not make a VLAN device.
    #[error("{source} (a VLAN device needs the 8021q module and CAP_NET_ADMIN)")]
    Make { source: NetlinkError },
    /// The kernel acknowledged a new VLAN device that a dump then does not show.
    #[error("VLAN device {name} was made on ifindex {parent} but is not there afterwards")]
    Missing { name: String, parent: u32 },
}

/// The name of the VLAN device joining `vid` on the netdev with index `parent`.
pub fn device_name(parent: u32, vid: u16) -> String {
    format!("vp{parent}.{vid}")
}

/// The VLAN devices on the netdev with index `parent`: VLAN id -> ifindex.
pub fn joined(parent: u32) -> Result<BTreeMap<u16, u32>, VlanError> {
    let replies = request_blocking(
        "list the VLAN devices",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )?;
    let mut out = BTreeMap::new();
    for m in replies {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
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
    let name = device_name(parent, vid);
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Link(parent));
    msg.attributes.push(LinkAttribute::IfName(name.clone()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vlan),
        LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(vid)])),
    ]));
    request_blocking(
        &format!("make VLAN device {name} for VLAN {vid} on ifindex {parent}"),
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(|source| VlanError::Make { source })?;
    joined(parent)?
        .get(&vid)
        .copied()
        .ok_or(VlanError::Missing { name, parent })
}

/// Leaves a VLAN: deletes the VLAN device with index `ifindex`.
pub fn leave(ifindex: u32) -> Result<(), VlanError> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    request_blocking(
        &format!("delete VLAN device ifindex {ifindex}"),
        RouteNetlinkMessage::DelLink(msg),
        0,
    )?;
    Ok(())
}

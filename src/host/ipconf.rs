//! An IPAM plugin's answer applied inside a container's namespace: the addresses on the
//! attachment's link and the routes through it, as the spec asks of the plugin that made
//! the interface (the runtime configures nothing itself). Run inside the namespace by
//! [`Netns::run`], found there by ifindex.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::request_blocking;
use super::netns::{Netns, NetnsError};

/// One route: `dst/prefix`, through `gw` when given (else on the link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRoute {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gw: Option<IpAddr>,
}

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Adds `addrs` (address and prefix) to link `ifindex` in `ns`, then `routes` through it.
/// An address or route already there is replaced, so a retried ADD succeeds.
pub fn configure(
    ns: &Netns,
    ifindex: u32,
    addrs: &[(IpAddr, u8)],
    routes: &[IpRoute],
) -> Result<(), NetnsError> {
    let path = ns.path().display().to_string();
    ns.run(|| {
        for (ip, prefix) in addrs {
            let mut m = AddressMessage::default();
            m.header.family = family(ip);
            m.header.prefix_len = *prefix;
            m.header.index = ifindex;
            m.attributes.push(AddressAttribute::Local(*ip));
            m.attributes.push(AddressAttribute::Address(*ip));
            let what = format!("add address {ip}/{prefix} to ifindex {ifindex} in {path}");
            request_blocking(
                &what,
                RouteNetlinkMessage::NewAddress(m),
                NLM_F_CREATE | NLM_F_REPLACE,
            )?;
        }
        for r in routes {
            let mut m = RouteMessage::default();
            m.header.address_family = family(&r.dst);
            m.header.destination_prefix_length = r.prefix;
            m.header.table = RouteHeader::RT_TABLE_MAIN;
            m.header.protocol = RouteProtocol::Boot;
            m.header.kind = RouteType::Unicast;
            m.header.scope = if r.gw.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            };
            if r.prefix > 0 {
                m.attributes
                    .push(RouteAttribute::Destination(RouteAddress::from(r.dst)));
            }
            if let Some(gw) = r.gw {
                m.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
            }
            m.attributes.push(RouteAttribute::Oif(ifindex));
            let what = format!(
                "add route {}/{} on ifindex {ifindex} in {path}",
                r.dst, r.prefix
            );
            request_blocking(
                &what,
                RouteNetlinkMessage::NewRoute(m),
                NLM_F_CREATE | NLM_F_REPLACE,
            )?;
        }
        Ok(())
    })
}

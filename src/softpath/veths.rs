//! The software path's veth pairs: a container's vPort (`attach = "veth"`), whose container
//! end the daemon makes inside the vPort's namespace with the vPort's MAC and whose host end
//! `vp-NAME` is a switch port; and the host's membership of an internal switch, a veth pair
//! in our own namespace whose end `host_netdev` the host configures (addresses, routes) and
//! whose other end `vh-<switch>` is the switch's trunk.
//!
//! Why a veth for the host rather than a TAP vportd holds: a veth needs no descriptor, so
//! the host's interface (and the addresses on it) outlives a daemon restart exactly as a VM's
//! persistent TAP does; and the kernel flow cache redirects into a veth as into any netdev.
//!
//! A container's veth is recorded in the TAP book (`taps.json`, vPort -> name and ifindex)
//! like a TAP: a start adopts the veth under the name only when the record names its
//! ifindex and the kernel says it is a veth; a vPort that leaves the plan has it deleted
//! (deleting the host end deletes both). A namespace that died took the pair with it: the
//! worker sees the port's device gone and the next reconcile makes the pair again if the
//! namespace is back.

use super::plan::{ExtraPort, PortPlan};
use super::running::SoftpathError;
use super::taps::{TAP_RING, TapBook, TapRecord};
use crate::host::afpacket::AfPacket;
use crate::host::netns::{self, Netns, Placement};
use crate::model::mac::Mac;
use crate::model::pool::VfAttributes;
use crate::provision::config::Attach;
use crate::switch::acl::{Acl, Action, Rule};
use crate::switch::port::DEFAULT_VLAN;
use crate::switch::qos::TokenBucket;
use crate::switch::{Edge, PortConfig};

/// A container attachment's port on `switch` (a CNI ADD on a `switch = "NAME"` network):
/// the veth `host_end` here, its peer `ifname` inside `netns` with `mac` and the MTU, made
/// and served as an `attach = "veth"` vPort's is; the port an access port on the VLAN (1
/// when none), `qos` its default priority, the max rate an ingress limit, spoof checking
/// (on unless turned off) an ACL allowing only `mac` as the source. `vport` names the port
/// in `status`, the metrics and the TAP book, and must not be a config vPort's name.
pub fn attachment_port(
    vport: &str,
    switch: &str,
    host_end: &str,
    netns: &str,
    ifname: &str,
    mac: Mac,
    attrs: &VfAttributes,
) -> ExtraPort {
    let mut cfg = PortConfig::access(vport, attrs.vlan.unwrap_or(DEFAULT_VLAN));
    cfg.default_pcp = attrs.qos.unwrap_or(0);
    cfg.mac = Some(mac);
    cfg.rate = attrs.max_tx_rate_mbps.map(TokenBucket::from_mbps);
    if attrs.spoofchk.unwrap_or(true) {
        cfg.ingress_acl = Acl::new(vec![
            Rule {
                src_mac: Some(mac),
                ..Rule::any(Action::Allow)
            },
            Rule::any(Action::Deny),
        ]);
    }
    ExtraPort {
        switch: switch.to_string(),
        port: PortPlan {
            vport: vport.to_string(),
            tap: host_end.to_string(),
            cfg,
            tap_owner: None,
            tap_group: None,
            attach: Attach::Veth {
                netns: netns.to_string(),
                ifname: ifname.to_string(),
            },
            mtu: attrs.mtu,
        },
    }
}

/// Whether the netdev `ifindex` here is a veth.
fn is_veth(ifindex: u32) -> bool {
    crate::host::tcflow::link_facts(ifindex).is_ok_and(|f| f.kind.as_deref() == Some("veth"))
}

/// The container's veth of vPort `p` (adopted or made), with the switch's edge on its host
/// end; None, with the reason in `errors`, when it cannot be had.
pub(super) fn connect(
    book: &mut TapBook,
    p: &PortPlan,
    netns: &str,
    ifname: &str,
    errors: &mut Vec<SoftpathError>,
) -> Option<(Box<dyn Edge>, u32)> {
    let device = nix::net::if_::if_nametoindex(p.tap.as_str()).ok();
    let recorded = book.get(&p.vport).map(|r| r.ifindex);
    let ifindex = match device {
        Some(i) if recorded == Some(i) && is_veth(i) => i,
        Some(ifindex) => {
            let (vport, tap) = (p.vport.clone(), p.tap.clone());
            errors.push(match recorded {
                Some(_) => SoftpathError::TapTaken {
                    vport,
                    tap,
                    ifindex,
                },
                None => SoftpathError::TapForeign {
                    vport,
                    tap,
                    ifindex,
                },
            });
            return None;
        }
        None => make(book, p, netns, ifname, errors)?,
    };
    if let Err(e) = crate::host::tap::keep_host_off(&p.tap) {
        log::warn!(
            "vPort {}: the host's addresses stay on {}: {e}",
            p.vport,
            p.tap
        );
    }
    match AfPacket::open_index_counted(ifindex, true, TAP_RING) {
        Ok(edge) => Some((Box::new(edge), ifindex)),
        Err(e) => {
            errors.push(SoftpathError::TapEdge {
                vport: p.vport.clone(),
                tap: p.tap.clone(),
                source: e,
            });
            None
        }
    }
}

/// Makes the pair, the container's end inside `netns` with the vPort's MAC, and records it.
fn make(
    book: &mut TapBook,
    p: &PortPlan,
    netns: &str,
    ifname: &str,
    errors: &mut Vec<SoftpathError>,
) -> Option<u32> {
    let fail = |source| SoftpathError::Veth {
        vport: p.vport.clone(),
        source,
    };
    let made = Netns::open(Attach::netns_path(netns)).and_then(|ns| {
        let inside = Placement {
            ifname: ifname.to_string(),
            mac: p.cfg.mac.map(|m| crate::model::mac::Mac(m.0)),
            mtu: p.mtu,
        };
        netns::create_veth(&ns, &p.tap, &inside)
    });
    match made {
        Ok(v) => {
            book.record(
                &p.vport,
                TapRecord {
                    name: p.tap.clone(),
                    ifindex: v.host_ifindex,
                },
                errors,
            );
            Some(v.host_ifindex)
        }
        Err(e) => {
            errors.push(fail(e));
            None
        }
    }
}

/// The switch's end of an internal switch's host veth (made with the host's end
/// `host_netdev` when absent, kept otherwise: the host's addresses on it stay), up.
pub(super) fn host_port(switch: &str, port: &str, host_netdev: &str) -> Result<u32, SoftpathError> {
    let fail = |why: String| SoftpathError::HostVeth {
        switch: switch.to_string(),
        host_netdev: host_netdev.to_string(),
        why,
    };
    if let Ok(i) = nix::net::if_::if_nametoindex(port)
        && is_veth(i)
    {
        crate::host::tap::set_link_up(i).map_err(|e| fail(e.to_string()))?;
        return Ok(i);
    }
    let here = Netns::current().map_err(|e| fail(e.to_string()))?;
    let inside = Placement {
        ifname: host_netdev.to_string(),
        mac: None,
        mtu: None,
    };
    let v = netns::create_veth(&here, port, &inside).map_err(|e| fail(e.to_string()))?;
    Ok(v.host_ifindex)
}

//! Network namespaces, the kernel half of connecting a NIC to a container: a netdev (a VF's,
//! or a veth end standing in for one) moved into the namespace a runtime names in
//! `CNI_NETNS` and set up there as `CNI_IFNAME`, and back; a veth pair whose far end is made
//! directly inside the namespace, and its deletion.
//!
//! A request about a link goes to the namespace the netlink socket was opened in, so the
//! work inside a container's namespace runs on a short-lived thread that has entered it
//! (`setns` changes only the calling thread), and every socket it opens speaks to that
//! namespace. The namespace a link comes back to is the calling thread's own (the
//! daemon's): it is opened before that thread starts.
//!
//! Links are found by ifindex and MAC, never by name alone: a moved link keeps its ifindex
//! unless the target namespace already uses it, and a VF keeps the MAC its PF gave it.
//!
//! When a namespace dies with links still inside (its last process exits and its file is
//! unmounted), the kernel destroys every virtual link in it (a veth end, and with it its
//! peer in our namespace), while a physical netdev, a VF's included, goes back to the
//! *initial* namespace (which is the daemon's only when the daemon runs there), possibly
//! renamed `dev<N>` when its name is taken there. So a DEL after the container is gone
//! finds a VF in the host by its PCI address, not in the dead namespace.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

use super::netlink::{NetlinkError, request_blocking};
use crate::model::mac::Mac;

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;

/// Errors opening, entering or working inside a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path could not be opened (a gone container's namespace, usually).
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The path is a file, or a namespace of another kind.
    #[error(
        "{path} is not a network namespace (CNI_NETNS names a file such as /var/run/netns/NAME or /proc/PID/ns/net)"
    )]
    NotNetns { path: PathBuf },
    /// setns(2) refused (no CAP_SYS_ADMIN, usually).
    #[error("cannot enter network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    /// A request failed; its `what` names the step, the ifindex and the namespace.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A link to be worked on is in neither namespace.
    #[error("{step}: no link with ifindex {ifindex}{mac} is in network namespace {path}")]
    Missing {
        step: &'static str,
        path: PathBuf,
        ifindex: u32,
        mac: String,
    },
    /// A link to be worked on is not in our namespace.
    #[error("{step}: no link {what} is in our network namespace")]
    NotHere { step: &'static str, what: String },
    /// After a move, more than one link in the target carries the moved link's MAC.
    #[error(
        "{step}: links {ifindexes:?} in network namespace {path} all carry MAC {mac}, so the moved ifindex {ifindex} cannot be told apart"
    )]
    Ambiguous {
        step: &'static str,
        path: PathBuf,
        ifindex: u32,
        mac: Mac,
        ifindexes: Vec<u32>,
    },
    /// An interface name the kernel would refuse.
    #[error(
        "interface name {name:?} is not one the kernel takes: 1 to 15 bytes, no '/', ':' or white space"
    )]
    BadName { name: String },
}

impl NetnsError {
    /// Whether the namespace's file is not there: its container is gone. A VF inside went
    /// back to the initial namespace and a veth end died with it, so DEL finds the VF
    /// through its PF and the veth's host end is already gone.
    pub fn namespace_gone(&self) -> bool {
        matches!(self, NetnsError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An open network namespace, held by its file descriptor: the namespace lives at least
/// as long as this value, even when its file is unmounted.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    fd: OwnedFd,
}

impl Netns {
    /// Opens the namespace at `path` (a bind mount under /var/run/netns, or /proc/PID/ns/net)
    /// and checks that it is one.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let fd = OwnedFd::from(file);
        let on_nsfs = nix::sys::statfs::fstatfs(&fd)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the open descriptor.
        let kind = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
        if !on_nsfs || kind != libc::CLONE_NEWNET {
            return Err(NetnsError::NotNetns { path });
        }
        Ok(Netns { path, fd })
    }

    /// The calling thread's own namespace: where [`move_back`] returns links to.
    pub fn current() -> Result<Netns, NetnsError> {
        Netns::open("/proc/thread-self/ns/net")
    }

    /// The path it was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread of its own that has entered this namespace, so every netlink
    /// socket `f` opens speaks to it; the caller's thread stays where it is.
    pub fn run<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, NetnsError> + Send,
    ) -> Result<T, NetnsError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(self.fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |source| NetnsError::Enter {
                        path: self.path.clone(),
                        source,
                    },
                )?;
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The links in this namespace.
    pub fn links(&self) -> Result<Vec<NsLink>, NetnsError> {
        let what = format!(
            "list the links in network namespace {}",
            self.path.display()
        );
        self.run(|| links_here(&what))
    }
}

/// What vportd needs to know of a link: enough to find it again and to CHECK it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsLink {
    pub ifindex: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
    /// Administratively up (IFF_UP), whatever the carrier says.
    pub up: bool,
    /// `IFLA_INFO_KIND`: "veth", "vlan", ...; None for a hardware netdev.
    pub kind: Option<String>,
    /// `IFLA_LINK`: a veth's peer's ifindex (in the peer's namespace), a VLAN's parent.
    pub link: Option<u32>,
}

fn ns_link(msg: &LinkMessage) -> NsLink {
    let mut l = NsLink {
        ifindex: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
        link: None,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(m) => l.mac = Mac::from_slice(m),
            LinkAttribute::Mtu(m) => l.mtu = Some(*m),
            LinkAttribute::Link(p) => l.link = Some(*p),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// The links of the calling thread's namespace (one dump).
/// The links in the calling thread's own namespace, asked from this thread (no thread of
/// its own, as [`Netns::links`] needs for another namespace).
pub fn links_of_caller() -> Result<Vec<NsLink>, NetnsError> {
    links_here("list the links in our own network namespace")
}

fn links_here(what: &str) -> Result<Vec<NsLink>, NetnsError> {
    let replies = request_blocking(
        what,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(ns_link(l)),
            _ => None,
        })
        .collect())
}

/// One change to link `ifindex` in the calling thread's namespace.
fn set_link(
    what: String,
    ifindex: u32,
    edit: impl FnOnce(&mut LinkMessage),
) -> Result<(), NetnsError> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    edit(&mut msg);
    request_blocking(&what, RouteNetlinkMessage::SetLink(msg), 0)?;
    Ok(())
}

fn set_up(msg: &mut LinkMessage, up: bool) {
    msg.header.change_mask = LinkFlags::Up;
    msg.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
}

fn check_name(name: &str) -> Result<(), NetnsError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(NetnsError::BadName { name: name.into() })
    }
}

/// The link that is `ifindex`, or carries `mac`, in `links`: the same ifindex with the same
/// MAC first, then the one link with that MAC (a move gives a new ifindex when the target
/// already uses the old one), then the same ifindex when no MAC is known.
fn find(
    links: &[NsLink],
    ifindex: u32,
    mac: Option<Mac>,
    step: &'static str,
    path: &Path,
) -> Result<Option<NsLink>, NetnsError> {
    let Some(mac) = mac else {
        return Ok(links.iter().find(|l| l.ifindex == ifindex).cloned());
    };
    if let Some(l) = links
        .iter()
        .find(|l| l.ifindex == ifindex && l.mac == Some(mac))
    {
        return Ok(Some(l.clone()));
    }
    let same: Vec<&NsLink> = links.iter().filter(|l| l.mac == Some(mac)).collect();
    match same.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(NetnsError::Ambiguous {
            step,
            path: path.to_path_buf(),
            ifindex,
            mac,
            ifindexes: many.iter().map(|l| l.ifindex).collect(),
        }),
    }
}

fn missing(step: &'static str, path: &Path, ifindex: u32, mac: Option<Mac>) -> NetnsError {
    NetnsError::Missing {
        step,
        path: path.to_path_buf(),
        ifindex,
        mac: mac.map(|m| format!(" or MAC {m}")).unwrap_or_default(),
    }
}

/// How a link is to look inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// None keeps the link's own (a VF's is set on its PF beforehand, where its driver
    /// refuses a change from the VF side).
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
}

/// What a moved link was in our namespace, for the way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub name: String,
    pub mac: Mac,
}

/// A link set up inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Its ifindex inside the namespace.
    pub ifindex: u32,
    pub mac: Mac,
    /// Its name and MAC before the move; None when an earlier call had already moved it.
    pub host: Option<HostIdentity>,
}

/// Moves link `ifindex` of the calling thread's namespace into `ns` and sets it up there as
/// `want` says: renamed, MAC and MTU set, up. A link already inside `ns` (an ADD retried
/// after a crash) is found there by `want.mac` or its ifindex and set up the same way.
pub fn move_into(ifindex: u32, ns: &Netns, want: &Placement) -> Result<Moved, NetnsError> {
    check_name(&want.ifname)?;
    let path = ns.path().display().to_string();
    let here = links_here(&format!("list our links to find ifindex {ifindex}"))?;
    let host = match here.iter().find(|l| l.ifindex == ifindex) {
        Some(l) => {
            let mac = l.mac.ok_or_else(|| NetnsError::NotHere {
                step: "move",
                what: format!("with ifindex {ifindex} and a MAC"),
            })?;
            set_link(
                format!("move ifindex {ifindex} into network namespace {path}"),
                ifindex,
                |m| m.attributes.push(LinkAttribute::NetNsFd(ns.fd.as_raw_fd())),
            )?;
            Some(HostIdentity {
                name: l.name.clone(),
                mac,
            })
        }
        // Moved by an earlier try? Only its MAC tells it apart inside: an ifindex alone
        // may be any of the container's links.
        None if want.mac.is_none() => {
            return Err(NetnsError::NotHere {
                step: "move",
                what: format!("with ifindex {ifindex}"),
            });
        }
        None => None,
    };
    let find_mac = host.as_ref().map(|h| h.mac).or(want.mac);
    let step = "set up the moved link";
    let (inside, mac) = ns.run(|| {
        let links = links_here(&format!("list the links in network namespace {path}"))?;
        let l = find(&links, ifindex, find_mac, step, ns.path())?
            .ok_or_else(|| missing(step, ns.path(), ifindex, find_mac))?;
        let at = l.ifindex;
        let doing = |what: &str| format!("{what} of ifindex {at} in network namespace {path}");
        if l.up {
            set_link(doing("take down"), at, |m| set_up(m, false))?;
        }
        if l.name != want.ifname {
            set_link(doing(&format!("rename to {}", want.ifname)), at, |m| {
                m.attributes
                    .push(LinkAttribute::IfName(want.ifname.clone()))
            })?;
        }
        let mut mac = l.mac;
        if let Some(new) = want.mac.filter(|w| Some(*w) != l.mac) {
            set_link(doing(&format!("set MAC {new}")), at, |m| {
                m.attributes.push(LinkAttribute::Address(new.0.to_vec()))
            })?;
            mac = Some(new);
        }
        if let Some(mtu) = want.mtu.filter(|w| Some(*w) != l.mtu) {
            set_link(doing(&format!("set MTU {mtu}")), at, |m| {
                m.attributes.push(LinkAttribute::Mtu(mtu))
            })?;
        }
        set_link(doing("bring up"), at, |m| set_up(m, true))?;
        let mac = mac.ok_or_else(|| missing(step, ns.path(), at, None))?;
        Ok((at, mac))
    })?;
    Ok(Moved {
        ifindex: inside,
        mac,
        host,
    })
}

/// Moves link `ifindex` (carrying `mac`) out of `ns` into the calling thread's namespace,
/// down, under `host.name`, with `host.mac` restored once it is back (a VF whose MAC its PF
/// set cannot change it from inside; the PF's clean-up does). Renamed before the move, since
/// the container's name (eth0) is often taken in the host. A link already back (a DEL
/// repeated) is found here by its restored MAC and name, and that is success. Returns its
/// ifindex here.
pub fn move_back(
    ns: &Netns,
    ifindex: u32,
    mac: Option<Mac>,
    host: &HostIdentity,
) -> Result<u32, NetnsError> {
    check_name(&host.name)?;
    let home = Netns::current()?;
    let path = ns.path().display().to_string();
    let step = "move the link back";
    let moved = ns.run(|| {
        let links = links_here(&format!("list the links in network namespace {path}"))?;
        let Some(l) = find(&links, ifindex, mac, step, ns.path())? else {
            return Ok(false);
        };
        let at = l.ifindex;
        let doing = |what: &str| format!("{what} of ifindex {at} in network namespace {path}");
        if l.up {
            set_link(doing("take down"), at, |m| set_up(m, false))?;
        }
        if l.name != host.name {
            set_link(doing(&format!("rename to {}", host.name)), at, |m| {
                m.attributes.push(LinkAttribute::IfName(host.name.clone()))
            })?;
        }
        set_link(doing("move back into our network namespace"), at, |m| {
            m.attributes
                .push(LinkAttribute::NetNsFd(home.fd.as_raw_fd()))
        })?;
        Ok(true)
    })?;
    let here = links_here("list our links to find the link moved back")?;
    let back = if moved {
        find(&here, ifindex, mac, step, home.path())?
    } else {
        here.iter()
            .find(|l| l.name == host.name && l.mac == Some(host.mac))
            .cloned()
    }
    .ok_or_else(|| missing(step, ns.path(), ifindex, mac))?;
    restore(back.ifindex, host)?;
    Ok(back.ifindex)
}

/// Link `ifindex` of the calling thread's namespace, down, under `host.name` with
/// `host.mac`: how a VF that never left (an ADD cut short), or came back by itself when its
/// namespace died, is returned to what it was. The caller finds it by its PCI address.
pub fn restore(ifindex: u32, host: &HostIdentity) -> Result<(), NetnsError> {
    check_name(&host.name)?;
    let here = links_here(&format!("list our links to find ifindex {ifindex}"))?;
    let l = here
        .iter()
        .find(|l| l.ifindex == ifindex)
        .ok_or_else(|| NetnsError::NotHere {
            step: "restore",
            what: format!("with ifindex {ifindex}"),
        })?;
    let doing = |what: &str| format!("{what} of ifindex {ifindex} in our network namespace");
    if l.up {
        set_link(doing("take down"), ifindex, |m| set_up(m, false))?;
    }
    if l.name != host.name {
        set_link(doing(&format!("rename to {}", host.name)), ifindex, |m| {
            m.attributes.push(LinkAttribute::IfName(host.name.clone()))
        })?;
    }
    if l.mac != Some(host.mac) {
        set_link(doing(&format!("restore MAC {}", host.mac)), ifindex, |m| {
            m.attributes
                .push(LinkAttribute::Address(host.mac.0.to_vec()))
        })?;
    }
    Ok(())
}

/// A veth pair for the software path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// The end in our namespace, a switch port, up.
    pub host_ifindex: u32,
    /// The container's end, inside the namespace, up.
    pub peer_ifindex: u32,
    pub peer_mac: Mac,
}

/// Makes a veth pair: `host_name` here, up, and its peer directly inside `ns` as `inside`
/// (name, MAC, MTU; the MTU is both ends'), up. A veth of that host name already here is
/// an earlier try of the same attachment (its name comes from it): it is deleted first.
pub fn create_veth(ns: &Netns, host_name: &str, inside: &Placement) -> Result<Veth, NetnsError> {
    check_name(host_name)?;
    check_name(&inside.ifname)?;
    delete_veth(host_name, None)?;
    let path = ns.path().display().to_string();
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(inside.ifname.clone()));
    peer.attributes
        .push(LinkAttribute::NetNsFd(ns.fd.as_raw_fd()));
    if let Some(mac) = inside.mac {
        peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(host_name.into()));
    if let Some(mtu) = inside.mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    request_blocking(
        &format!(
            "make veth {host_name} with peer {} in network namespace {path}",
            inside.ifname
        ),
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    let step = "set up the new veth";
    let host = our_veth(host_name)?.ok_or_else(|| NetnsError::NotHere {
        step,
        what: format!("named {host_name} of kind veth"),
    })?;
    let peer_index = host.link.unwrap_or(0);
    set_link(
        format!("bring up veth {host_name} (ifindex {})", host.ifindex),
        host.ifindex,
        |m| set_up(m, true),
    )?;
    let peer_mac = ns.run(|| {
        let links = links_here(&format!("list the links in network namespace {path}"))?;
        let p = links
            .iter()
            .find(|l| l.ifindex == peer_index && l.name == inside.ifname)
            .ok_or_else(|| missing(step, ns.path(), peer_index, inside.mac))?;
        set_link(
            format!("bring up ifindex {peer_index} in network namespace {path}"),
            peer_index,
            |m| set_up(m, true),
        )?;
        p.mac
            .ok_or_else(|| missing(step, ns.path(), peer_index, None))
    })?;
    Ok(Veth {
        host_ifindex: host.ifindex,
        peer_ifindex: peer_index,
        peer_mac,
    })
}

fn our_veth(name: &str) -> Result<Option<NsLink>, NetnsError> {
    Ok(links_here(&format!("list our links to find veth {name}"))?
        .into_iter()
        .find(|l| l.name == name && l.kind.as_deref() == Some("veth")))
}

/// What [`delete_veth`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The pair was there and is gone now.
    Deleted,
    /// Nothing of ours was there: deleted before, or gone with its namespace.
    AlreadyGone,
}

/// Deletes the veth pair whose end here is `host_name` (and, when known, `ifindex`: a link
/// by that index of another name or kind is not ours, the index was reused, and is left
/// alone). Deleting one end deletes both.
pub fn delete_veth(host_name: &str, ifindex: Option<u32>) -> Result<Deleted, NetnsError> {
    let found = our_veth(host_name)?.filter(|l| ifindex.is_none_or(|i| i == l.ifindex));
    let Some(l) = found else {
        return Ok(Deleted::AlreadyGone);
    };
    let mut msg = LinkMessage::default();
    msg.header.index = l.ifindex;
    let sent = request_blocking(
        &format!("delete veth {host_name} (ifindex {})", l.ifindex),
        RouteNetlinkMessage::DelLink(msg),
        0,
    );
    match sent {
        Ok(_) => Ok(Deleted::Deleted),
        // Its namespace may have died (taking it along) between the dump and the delete.
        Err(e) => match our_veth(host_name)? {
            Some(still) if still.ifindex == l.ifindex => Err(e.into()),
            _ => Ok(Deleted::AlreadyGone),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, mac: u8) -> NsLink {
        NsLink {
            ifindex,
            name: format!("l{ifindex}"),
            mac: Some(Mac([2, 0, 0, 0, 0, mac])),
            mtu: Some(1500),
            up: false,
            kind: None,
            link: None,
        }
    }

    #[test]
    fn a_moved_link_is_found_by_ifindex_and_mac_then_by_mac_alone() {
        let p = Path::new("/var/run/netns/x");
        let m = |b| Some(Mac([2, 0, 0, 0, 0, b]));
        let links = [link(1, 9), link(7, 1), link(8, 2)];
        assert_eq!(find(&links, 7, m(1), "s", p).unwrap().unwrap().ifindex, 7);
        // The index was taken in the target: the kernel gave the link a new one.
        assert_eq!(find(&links, 3, m(2), "s", p).unwrap().unwrap().ifindex, 8);
        // The same ifindex with another MAC is another link.
        assert_eq!(find(&links, 7, m(5), "s", p).unwrap(), None);
        assert_eq!(find(&links, 7, None, "s", p).unwrap().unwrap().ifindex, 7);
        let twins = [link(4, 3), link(5, 3)];
        let err = find(&twins, 9, m(3), "move", p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "move: links [4, 5] in network namespace /var/run/netns/x all carry MAC 02:00:00:00:00:03, so the moved ifindex 9 cannot be told apart"
        );
    }

    #[test]
    fn names_the_kernel_refuses_are_refused_first() {
        for bad in ["", "a/b", "a:b", "a b", "sixteen-bytes-xx", "..", "."] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["eth0", "net1", "fifteen-bytes-x"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn a_path_that_is_not_a_namespace_is_refused_naming_it() {
        let err = Netns::open("/proc/self/status").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/self/status is not a network namespace (CNI_NETNS names a file such as /var/run/netns/NAME or /proc/PID/ns/net)"
        );
        let err = Netns::open("/proc/self/ns/uts").unwrap_err();
        assert!(matches!(err, NetnsError::NotNetns { .. }), "{err}");
        let err = Netns::open("/var/run/netns/vportd-no-such-namespace").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "cannot open network namespace /var/run/netns/vportd-no-such-namespace: "
            ),
            "{err}"
        );
        Netns::current().expect("our own namespace opens");
    }
}

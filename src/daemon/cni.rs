//! The daemon's side of CNI: it owns the attachment book (`attachments.json` in the state
//! directory, next to the state file the planner reads its holders from) and runs the host
//! steps the book decides, so that the daemon's journal is the one owner of every pool VF.
//!
//! One call at a time (a mutex around load-decide-write-run): two ADDs for different
//! containers never see the same free VF. Each call reads the book from its file, and every
//! write is atomic (temporary file and rename) in the order `attach::book` documents: the
//! entry `Reserved` before the first step, the VF netdev's name and MAC before they change,
//! `Attached` after the last step; on DEL and GC `Reserved` again before the release steps
//! and forgotten after them. A kill -9 anywhere leaves an entry that holds its VF and MAC,
//! which the next ADD, DEL or GC finishes.
//!
//! The software path (`switch = "NAME"` networks, on a private or internal `[[switch]]` of
//! the host config): the book's entry is the port's one record. The daemon's loop owns the
//! running switches and serves every `SoftPort` entry of the book as a port
//! ([`soft_ports`]: a veth made by `softpath::veths` as for an `attach = "veth"` vPort, the
//! container's end inside the namespace with the attachment's MAC and MTU, the host end a
//! switch port with the attachment's VLAN, priority, max rate and spoof check, the flow
//! cache on). It does so every period, and at once when a CNI call kicks it
//! ([`SoftPathLink`]), so ADD answers once the port carries frames. A released port is
//! forgotten *first* and its veth deleted after: the software path's own record of its
//! veths (`taps.json`) deletes one the book no longer has, so a kill -9 between the two
//! leaves nothing behind either; and the veth is deleted by its name as well, for one made
//! by a try that died before it was recorded.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::attach::book::{self, Book, HostLink, Key, MacFrom, Request, Step, Target};
use crate::attach::cni::CniError;
use crate::daemon::protocol::CniHostEnd;
use crate::daemon::protocol::{CniAttached, CniCall, CniKey, CniTarget, MacSource, Response};
use crate::host::fs::KernelFs;
use crate::host::netns::{self, HostIdentity, Netns, Placement};
use crate::host::sriov::LiveSriov;
use crate::host::userfiles::{self, UserFiles};
use crate::model::file_errors::FilesError;
use crate::model::mac::Mac;
use crate::model::pool::{Pool, VfAttributes};
use crate::model::vf::VfConfig;
use crate::provision::ops::SriovOps;
use crate::provision::state::{ATTACHMENTS_FILE, State};
use crate::softpath::{ExtraPort, Snapshot};

/// How long a VF's netdev may take to show the MAC its PF just set (igbvf resets itself).
const MAC_SETTLE: Duration = Duration::from_secs(5);

/// How long the daemon's loop may take to serve a kick (it may be in a rebalancer tick).
const KICK_WITHIN: Duration = Duration::from_secs(20);

/// What the software path answers a kick: its problems and what it runs now (None: no
/// software path runs).
pub struct SoftAnswer {
    pub problems: Vec<String>,
    pub snapshot: Option<Snapshot>,
}

/// A kick: where the loop sends its answer.
pub type Kick = std::sync::mpsc::SyncSender<SoftAnswer>;

/// The CNI service's way to the daemon loop's software path.
#[derive(Clone)]
pub struct SoftPathLink(tokio::sync::mpsc::UnboundedSender<Kick>);

/// The loop's end of [`SoftPathLink`].
pub struct KickInbox(tokio::sync::mpsc::UnboundedReceiver<Kick>);

/// A link and its inbox: the control plane's CNI service holds the one, the loop the other.
pub fn soft_link() -> (SoftPathLink, KickInbox) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (SoftPathLink(tx), KickInbox(rx))
}

/// The next kick; never, without an inbox.
pub async fn next_kick(inbox: &mut Option<KickInbox>) -> Option<Kick> {
    match inbox {
        Some(i) => i.0.recv().await,
        None => std::future::pending().await,
    }
}

impl SoftPathLink {
    /// Asks the loop to serve the book now, and waits for its answer.
    fn serve_now(&self) -> Result<SoftAnswer, CniError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let gone = |_| CniError::TryAgainLater {
            why: "the daemon's loop, which runs the software switches, has stopped".into(),
        };
        self.0.send(tx).map_err(gone)?;
        rx.recv_timeout(KICK_WITHIN)
            .map_err(|_| CniError::TryAgainLater {
                why: format!("the daemon's software path did not answer within {KICK_WITHIN:?}"),
            })
    }
}

/// The switch port name of an attachment's veth: `cni:` and its host end (no config vPort
/// has a colon in its name).
pub fn soft_vport(host_end: &str) -> String {
    format!("cni:{host_end}")
}

/// Every software port of the attachment book in `state_dir`, as the software path serves
/// it (an unreadable book serves none: the loop says the book's problem through CNI calls).
pub fn soft_ports(state_dir: &Path) -> Vec<ExtraPort> {
    let Ok(book) = load_book(&state_dir.join(ATTACHMENTS_FILE)) else {
        return Vec::new();
    };
    book.entries()
        .filter_map(|e| match &e.alloc {
            book::Allocation::SoftPort { switch, host_end } => {
                Some(crate::softpath::veths::attachment_port(
                    &soft_vport(host_end),
                    switch,
                    host_end,
                    &e.netns.display().to_string(),
                    &e.key.ifname,
                    e.mac,
                    &e.attrs,
                ))
            }
            book::Allocation::Vf { .. } => None,
        })
        .collect()
}

fn load_book(path: &Path) -> Result<Book, CniError> {
    match userfiles::read_text(path) {
        Ok(text) => Book::from_json(&text).map_err(|e| io(&e.to_string())),
        Err(FilesError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Book::default())
        }
        Err(e) => Err(io(&e.to_string())),
    }
}

/// The CNI half of the daemon.
pub struct CniService {
    state_dir: PathBuf,
    one_at_a_time: Mutex<()>,
    /// The loop's software path, for `switch` networks; None: they are refused.
    soft: Option<SoftPathLink>,
}

impl CniService {
    pub fn new(state_dir: PathBuf) -> CniService {
        CniService {
            state_dir,
            one_at_a_time: Mutex::new(()),
            soft: None,
        }
    }

    /// The service, serving `switch` networks through the loop's software path.
    pub fn serving_switches(self, soft: Option<SoftPathLink>) -> CniService {
        CniService { soft, ..self }
    }

    /// Answers one CNI request of the control protocol.
    pub fn answer(&self, req: CniRequest) -> Response {
        let _turn = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let done = match req {
            CniRequest::Add(call) => self.add(&call).map(Some),
            CniRequest::Del(call) => self.release(&call.key).map(|_| None),
            CniRequest::Check(call) => self.check(&call).map(|_| None),
            CniRequest::Gc { network, valid } => self.gc(&network, &valid).map(|_| None),
            CniRequest::Status { target } => self.status(&target).map(|_| None),
        };
        match done {
            Ok(attached) => Response::CniDone { attached },
            Err(e) => Response::CniError {
                code: e.code(),
                msg: e.to_string(),
                details: e.details(),
            },
        }
    }

    /// Attachments whose namespace is gone, for the daemon's start: their VFs went back to
    /// the host namespace by themselves, but their MAC and VLAN stay until DEL or GC.
    pub fn gone_namespaces(&self) -> Vec<String> {
        let Ok(book) = self.load() else {
            return Vec::new();
        };
        book.entries()
            .filter(|e| !e.netns.exists())
            .map(|e| {
                format!(
                    "{} on network {}: its network namespace {} is gone; a CNI DEL or GC frees its VF",
                    e.key,
                    e.network,
                    e.netns.display()
                )
            })
            .collect()
    }

    fn book_path(&self) -> PathBuf {
        self.state_dir.join(ATTACHMENTS_FILE)
    }

    fn load(&self) -> Result<Book, CniError> {
        load_book(&self.book_path())
    }

    fn save(&self, book: &Book) -> Result<(), CniError> {
        userfiles::write_atomic(&self.book_path(), book.to_json().as_bytes())
            .map_err(|e| io(&e.to_string()))
    }

    fn pools(&self) -> Result<Vec<Pool>, CniError> {
        State::load(&UserFiles, &self.state_dir)
            .map(|s| s.pools)
            .map_err(|e| CniError::TryAgainLater {
                why: format!("the daemon cannot read its state: {e}"),
            })
    }

    fn add(&self, call: &CniCall) -> Result<CniAttached, CniError> {
        let target = self.served(&call.target)?;
        if matches!(target, Target::Switch(_)) {
            soft_attrs_served(&call.attrs)?;
        }
        let netns = call.netns.clone().ok_or_else(|| CniError::BadEnv {
            var: "CNI_NETNS",
            problem: "is required by ADD".into(),
        })?;
        let key = key(&call.key);
        let req = Request {
            key: key.clone(),
            network: call.network.clone(),
            netns: PathBuf::from(&netns),
            target,
            mac: call.mac,
            mac_from: match call.mac_from {
                MacSource::Runtime => MacFrom::Runtime,
                MacSource::Args => MacFrom::Args,
                MacSource::Derived => MacFrom::Derived,
            },
            attrs: call.attrs,
        };
        let pools = match &req.target {
            Target::Pool(_) => self.pools()?,
            Target::Switch(_) => Vec::new(),
        };
        let before = self.load()?;
        let retry = before.get(&key).is_some();
        let (mut book, steps) = before.add(&pools, &req).map_err(|e| e.to_cni())?;
        self.save(&book)?;
        if let Target::Switch(_) = &req.target {
            return self.add_soft(book, &key, &netns, retry && !steps.is_empty());
        }
        let mut host = Host::live();
        let mut inside = None;
        for step in &steps {
            if let Step::ConfigureVf { pf, vf, .. } = step
                && book.get(&key).is_some_and(|e| e.host.is_none())
                && let Some(link) = host.vf_link(pf, *vf)?
            {
                // Its name and MAC before the PF's admin MAC changes the MAC.
                book = book
                    .note_host(
                        &key,
                        HostLink {
                            name: link.1,
                            mac: link.2,
                        },
                    )
                    .map_err(|e| e.to_cni())?;
                self.save(&book)?;
            }
            if let Some(ifindex) = host.run(step)? {
                inside = Some(ifindex);
            }
        }
        let entry = book
            .get(&key)
            .cloned()
            .ok_or_else(|| io("the book lost the entry"))?;
        if let Some(ifindex) = inside {
            let facts = book::Attached {
                inside_ifindex: ifindex,
                host_ifindex: None,
            };
            book = book.attached(&key, facts).map_err(|e| e.to_cni())?;
            self.save(&book)?;
        }
        let pci_id = match &entry.alloc {
            book::Allocation::Vf { pf, vf, .. } => host.vf_bdf(pf, *vf),
            book::Allocation::SoftPort { .. } => None,
        };
        Ok(CniAttached {
            ifname: entry.key.ifname.clone(),
            mac: entry.mac,
            sandbox: netns,
            pci_id,
            mtu: entry.attrs.mtu,
            ifindex: inside.or(entry.inside_ifindex),
            host: None,
        })
    }

    /// ADD on a switch network, once the book holds the entry: the loop serves it, then
    /// the container's end is found by name and MAC. A retry first deletes the veth an
    /// earlier try may have left unrecorded. A port that cannot be served is undone.
    fn add_soft(
        &self,
        book: Book,
        key: &Key,
        netns: &str,
        retry: bool,
    ) -> Result<CniAttached, CniError> {
        let entry = book
            .get(key)
            .cloned()
            .ok_or_else(|| io("the book lost the entry"))?;
        let book::Allocation::SoftPort { switch, host_end } = &entry.alloc else {
            return Err(io("a switch network's entry holds no switch port"));
        };
        let vport = soft_vport(host_end);
        let served = if entry.phase == book::Phase::Attached {
            // The same ADD again: it is attached, answered as it is.
            self.soft_link()
                .and_then(|_| host_end_link(host_end, entry.host_ifindex))
        } else {
            if retry {
                let _ = netns::delete_veth(host_end, None);
            }
            self.soft_link()
                .and_then(SoftPathLink::serve_now)
                .and_then(|answer| port_served(&answer, &vport, switch))
                .and_then(|_| host_end_link(host_end, None))
        };
        let host = match served {
            Ok(h) => h,
            Err(e) => {
                let _ = self.release_soft(book, key);
                return Err(e);
            }
        };
        // The container's end is the host end's peer (IFLA_LINK, its ifindex there): the
        // software path made it inside with its name and MAC (CHECK looks at it there).
        let Some(inside) = host.peer.or(entry.inside_ifindex) else {
            let _ = self.release_soft(book, key);
            return Err(CniError::TryAgainLater {
                why: format!(
                    "{key}: the veth end {host_end} names no peer in {netns} after the switch served it"
                ),
            });
        };
        let facts = book::Attached {
            inside_ifindex: inside,
            host_ifindex: Some(host.ifindex),
        };
        self.save(&book.attached(key, facts).map_err(|e| e.to_cni())?)?;
        Ok(CniAttached {
            ifname: entry.key.ifname.clone(),
            mac: entry.mac,
            sandbox: netns.to_string(),
            pci_id: None,
            mtu: entry.attrs.mtu,
            ifindex: Some(inside),
            host: Some(CniHostEnd {
                name: host_end.clone(),
                mac: host.mac,
            }),
        })
    }

    fn soft_link(&self) -> Result<&SoftPathLink, CniError> {
        self.soft.as_ref().ok_or_else(|| CniError::NotAvailable {
            why: "this daemon serves no switch networks: it runs without a software path (start it with --config HOST.toml)".into(),
        })
    }

    /// Frees a software port: the entry forgotten, the loop told (its record of the veth
    /// deletes it), the veth deleted by name (one no record has).
    fn release_soft(&self, book: Book, key: &Key) -> Result<(), CniError> {
        let Some(entry) = book.get(key).cloned() else {
            return Ok(());
        };
        self.save(&book.forget(key))?;
        self.release_soft_veths(&[entry])
    }

    fn release_soft_veths(&self, gone: &[book::Entry]) -> Result<(), CniError> {
        if let Some(link) = &self.soft {
            // Problems of other ports are not this call's; its veth is checked below.
            let _ = link.serve_now();
        }
        for e in gone {
            if let book::Allocation::SoftPort { host_end, .. } = &e.alloc {
                netns::delete_veth(host_end, None).map_err(|err| CniError::TryAgainLater {
                    why: format!("{}: cannot delete its veth {host_end}: {err}", e.key),
                })?;
            }
        }
        Ok(())
    }

    /// DEL: the entry back to `Reserved`, its release steps, then forgotten.
    fn release(&self, key: &CniKey) -> Result<(), CniError> {
        let key = self::key(key);
        let now = self.load()?;
        if now
            .get(&key)
            .is_some_and(|e| matches!(e.alloc, book::Allocation::SoftPort { .. }))
        {
            return self.release_soft(now, &key);
        }
        let (book, steps) = now.del(&key);
        if steps.is_empty() && book.get(&key).is_none() {
            return Ok(());
        }
        self.save(&book)?;
        let mut host = Host::live();
        for step in &steps {
            host.run(step)?;
        }
        self.save(&book.forget(&key))
    }

    fn gc(&self, network: &str, valid: &[CniKey]) -> Result<(), CniError> {
        let valid: Vec<Key> = valid.iter().map(key).collect();
        let (mut book, releases) = self.load()?.gc(network, &valid);
        if releases.is_empty() {
            return Ok(());
        }
        // Software ports: forgotten first, their veths deleted after (see the module's
        // doc); VFs: released as DEL releases them.
        let (soft, releases): (Vec<_>, Vec<_>) = releases.into_iter().partition(|r| {
            book.get(&r.key)
                .is_some_and(|e| matches!(e.alloc, book::Allocation::SoftPort { .. }))
        });
        let soft: Vec<book::Entry> = soft
            .iter()
            .filter_map(|r| book.get(&r.key).cloned())
            .collect();
        for e in &soft {
            book = book.forget(&e.key);
        }
        self.save(&book)?;
        if !soft.is_empty() {
            self.release_soft_veths(&soft)?;
        }
        let mut host = Host::live();
        let mut first_error = None;
        for r in releases {
            match r.steps.iter().try_for_each(|s| host.run(s).map(|_| ())) {
                Ok(()) => {
                    book = book.forget(&r.key);
                    self.save(&book)?;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn check(&self, call: &CniCall) -> Result<(), CniError> {
        let book = self.load()?;
        let entry = book
            .get(&key(&call.key))
            .ok_or_else(|| CniError::TryAgainLater {
                why: format!(
                    "{} is not attached on network {}: no ADD for it reached the daemon",
                    key(&call.key),
                    call.network
                ),
            })?;
        let seen = match &entry.alloc {
            book::Allocation::Vf { pf, vf, .. } => Host::live().observe(pf, *vf, entry)?,
            book::Allocation::SoftPort { switch, host_end } => {
                self.soft_link()?;
                if let Err(e) = host_end_link(host_end, entry.host_ifindex) {
                    return Err(CniError::InvalidConfig {
                        key: "prevResult".into(),
                        problem: format!("{}'s port on switch {switch} is gone: {e}", entry.key),
                        hint: "delete the container (or its network) and add it again".into(),
                    });
                }
                observe_soft(entry)
            }
        };
        book::check(entry, &seen).map_err(|d| CniError::InvalidConfig {
            key: "prevResult".into(),
            problem: d.to_string(),
            hint: "delete the container (or its network) and add it again".into(),
        })
    }

    fn status(&self, target: &CniTarget) -> Result<(), CniError> {
        let name = match target {
            CniTarget::Pool(name) => name,
            CniTarget::Switch(_) => {
                // A switch's ports are veths: there is room while the software path runs.
                return self
                    .soft_link()?
                    .serve_now()
                    .and_then(|a| match a.snapshot {
                        Some(_) => Ok(()),
                        None => Err(CniError::NotAvailable {
                            why: a.problems.join("; "),
                        }),
                    })
                    .map_err(|e| CniError::NotAvailable { why: e.to_string() });
            }
            CniTarget::Uplink(_) => return Err(not_served("uplink")),
        };
        let pools = self.pools()?;
        let pool = pools
            .iter()
            .find(|p| p.name == *name)
            .ok_or_else(|| CniError::NotAvailable {
                why: format!(
                    "the daemon's state has no pool {name:?}: add a [[pool]] to the host config and run vportd apply"
                ),
            })?;
        self.load()?.status(pool).map(|_| ())
    }
}

/// A CNI request, as the control socket hands it over.
pub enum CniRequest {
    Add(CniCall),
    Del(CniCall),
    Check(CniCall),
    Gc { network: String, valid: Vec<CniKey> },
    Status { target: CniTarget },
}

fn key(k: &CniKey) -> Key {
    Key {
        container_id: k.container_id.clone(),
        ifname: k.ifname.clone(),
    }
}

fn io(what: &str) -> CniError {
    CniError::Io {
        what: what.to_string(),
    }
}

fn not_served(key: &str) -> CniError {
    CniError::InvalidConfig {
        key: key.into(),
        problem: format!(
            "networks on an {key} are not served by this vportd yet (pools and switches are)"
        ),
        hint: "name a [[pool]] or a [[switch]] of the host config: {\"type\": \"vportd\", \"pool\": \"NAME\"}"
            .into(),
    }
}

impl CniService {
    fn served(&self, t: &CniTarget) -> Result<Target, CniError> {
        match t {
            CniTarget::Pool(p) => Ok(Target::Pool(p.clone())),
            CniTarget::Switch(s) => self.soft_link().map(|_| Target::Switch(s.clone())),
            CniTarget::Uplink(_) => Err(not_served("uplink")),
        }
    }
}

/// The attributes a software port has: no minimum rate (the switch guarantees none) and no
/// trust (a VF's; the port's spoof check is `spoofchk`).
fn soft_attrs_served(a: &VfAttributes) -> Result<(), CniError> {
    if a.min_tx_rate_mbps.is_some_and(|r| r > 0) {
        return Err(CniError::invalid(
            "min_tx_rate_mbps",
            "is not served on a software switch: it guarantees no rate".to_string(),
            "drop min_tx_rate_mbps, or use a pool (a VF) for a guaranteed rate",
        ));
    }
    if a.trust == Some(true) {
        return Err(CniError::invalid(
            "trust",
            "is a VF's setting; a software switch port has none".to_string(),
            "drop trust; spoofchk = false lets the container send from other MACs",
        ));
    }
    Ok(())
}

/// Whether the software path's answer serves `vport` on `switch` with its veth; else why
/// not, code 7 when the host config has no such `[[switch]]`.
fn port_served(answer: &SoftAnswer, vport: &str, switch: &str) -> Result<(), CniError> {
    let connected = answer
        .snapshot
        .as_ref()
        .and_then(|s| s.vport(vport))
        .is_some_and(|p| p.edge == "veth");
    if connected {
        return Ok(());
    }
    let ours: Vec<&str> = answer
        .problems
        .iter()
        .filter(|p| p.contains(vport) || answer.snapshot.is_none())
        .map(String::as_str)
        .collect();
    if ours
        .iter()
        .any(|p| p.contains("is not a [[switch]] of the host config"))
    {
        return Err(CniError::invalid(
            "switch",
            format!("{switch:?} is not a [[switch]] of vportd's host config"),
            "name a private or internal [[switch]] of the host config the daemon runs with",
        ));
    }
    Err(CniError::TryAgainLater {
        why: format!(
            "switch {switch} does not serve the attachment's veth yet: {}",
            if ours.is_empty() {
                "no problem was reported".to_string()
            } else {
                ours.join("; ")
            }
        ),
    })
}

/// A veth's end in the daemon's namespace.
struct HostEnd {
    ifindex: u32,
    mac: Mac,
    /// Its peer's ifindex, in the peer's namespace.
    peer: Option<u32>,
}

/// The veth's end here, when it is one (and has `ifindex`, when given). Asked from the
/// calling thread: the daemon's threads are in its namespace.
fn host_end_link(host_end: &str, ifindex: Option<u32>) -> Result<HostEnd, CniError> {
    let missing = || CniError::TryAgainLater {
        why: format!("the veth end {host_end} is not in the daemon's namespace"),
    };
    let links =
        netns::links_of_caller().map_err(|e| CniError::TryAgainLater { why: e.to_string() })?;
    let l = links
        .into_iter()
        .find(|l| {
            l.name == host_end
                && l.kind.as_deref() == Some("veth")
                && ifindex.is_none_or(|i| i == l.ifindex)
        })
        .ok_or_else(missing)?;
    Ok(HostEnd {
        ifindex: l.ifindex,
        mac: l.mac.ok_or_else(missing)?,
        peer: l.link,
    })
}

/// What CHECK sees of a software port: the container's link (by ifindex and MAC in its
/// namespace); the port's VLAN and rate are the record's by construction (the switch is
/// given its ports from the book), so they never differ.
fn observe_soft(e: &book::Entry) -> book::Observed {
    let link = Netns::open(&e.netns).ok().and_then(|ns| {
        let l = ns
            .links()
            .ok()?
            .into_iter()
            .find(|l| Some(l.ifindex) == e.inside_ifindex && l.mac == Some(e.mac))?;
        Some(book::ObservedLink {
            name: l.name,
            mac: l.mac?,
        })
    });
    book::Observed {
        link,
        vlan: e.attrs.vlan.unwrap_or(0),
        qos: e.attrs.qos.unwrap_or(0),
        max_tx_rate_mbps: e.attrs.max_tx_rate_mbps.unwrap_or(0),
        min_tx_rate_mbps: e.attrs.min_tx_rate_mbps.unwrap_or(0),
    }
}

/// The VF settings an attachment's attributes mean: what is not set is the clean value.
/// No link state (igb has none: it follows the PF).
fn vf_config(vf: u32, mac: Mac, a: &VfAttributes) -> VfConfig {
    let clean = VfConfig::clean(vf);
    VfConfig {
        mac,
        vlan: a.vlan.map_or(0, u32::from),
        qos: a.qos.map_or(0, u32::from),
        min_tx_rate: Some(a.min_tx_rate_mbps.unwrap_or(0)),
        max_tx_rate: Some(a.max_tx_rate_mbps.unwrap_or(0)),
        spoofchk: Some(a.spoofchk.unwrap_or(true)),
        trust: Some(a.trust.unwrap_or(false)),
        link_state: None,
        ..clean
    }
}

/// The live host: VF settings through the `SriovOps` implementation, netdevs through
/// `host::netns`, the VF's netdev found through its PF's `virtfn<N>` link in sysfs.
struct Host {
    sriov: LiveSriov,
    fs: KernelFs,
}

impl Host {
    fn live() -> Host {
        Host {
            sriov: LiveSriov::new(KernelFs::system()),
            fs: KernelFs::system(),
        }
    }

    fn vf_bdf(&mut self, pf: &str, vf: u32) -> Option<String> {
        self.sriov.vf_bdf(pf, vf).ok().flatten()
    }

    /// The first netdev in our namespace of a PCI function: (ifindex, name, MAC).
    fn netdev(&self, bdf: &str) -> Option<(u32, String, Mac)> {
        let dev = format!("/sys/bus/pci/devices/{bdf}/net");
        let name = self.fs.list(&dev).ok()?.into_iter().next()?;
        let ifindex = self
            .fs
            .read_parsed(&format!("/sys/class/net/{name}/ifindex"))?;
        let mac = self
            .fs
            .read_lenient(&format!("/sys/class/net/{name}/address"))?
            .trim()
            .parse()
            .ok()?;
        Some((ifindex, name, mac))
    }

    fn vf_link(&mut self, pf: &str, vf: u32) -> Result<Option<(u32, String, Mac)>, CniError> {
        Ok(self.vf_bdf(pf, vf).and_then(|b| self.netdev(&b)))
    }

    fn pf_ifindex(&self, pf: &str) -> Result<u32, CniError> {
        self.netdev(pf)
            .map(|n| n.0)
            .ok_or_else(|| CniError::TryAgainLater {
                why: format!("PF {pf} has no netdev in the host namespace (is its driver bound?)"),
            })
    }

    fn set_vf(&mut self, pf: &str, cfg: &VfConfig) -> Result<(), CniError> {
        let ifx = self.pf_ifindex(pf)?;
        self.sriov
            .set_vf(ifx, cfg)
            .map_err(|e| CniError::TryAgainLater {
                why: format!("cannot configure VF {} of {pf}: {e}", cfg.vf),
            })
    }

    /// Runs one step of the book; a move into the container answers the link's ifindex
    /// there.
    fn run(&mut self, step: &Step) -> Result<Option<u32>, CniError> {
        let failed = |what: String| CniError::TryAgainLater { why: what };
        match step {
            Step::ConfigureVf { pf, vf, mac, attrs } => {
                self.set_vf(pf, &vf_config(*vf, *mac, attrs))?;
                Ok(None)
            }
            Step::CleanVf { pf, vf } => {
                self.set_vf(pf, &vf_config(*vf, Mac::ZERO, &VfAttributes::default()))?;
                Ok(None)
            }
            Step::MoveVfIn {
                pf,
                vf,
                netns,
                ifname,
                mac,
                mtu,
            } => {
                let ns = Netns::open(netns).map_err(|e| failed(e.to_string()))?;
                // Here still: its driver must take the MAC its PF set before it moves (a VF
                // may not change it itself). Gone from here: an earlier try moved it, and
                // only its MAC finds it among the container's links.
                let (ifindex, find_by) = match self.vf_link(pf, *vf)? {
                    Some((ifx, name, now)) => {
                        if now != *mac {
                            self.reset_vf_netdev(ifx, &name, pf, *vf, *mac)?;
                        }
                        (ifx, None)
                    }
                    None => (0, Some(*mac)),
                };
                let want = Placement {
                    ifname: ifname.clone(),
                    mac: find_by,
                    mtu: *mtu,
                };
                let moved = netns::move_into(ifindex, &ns, &want)
                    .map_err(|e| failed(format!("VF {vf} of {pf}: {e}")))?;
                Ok(Some(moved.ifindex))
            }
            Step::MoveVfBack {
                pf,
                vf,
                netns,
                inside_ifindex,
                mac,
                host,
            } => {
                let Some(host) = host else { return Ok(None) };
                self.move_back(pf, *vf, netns, *inside_ifindex, *mac, host)?;
                Ok(None)
            }
            Step::CreateVeth { .. }
            | Step::AddSwitchPort { .. }
            | Step::RemoveSwitchPort { .. }
            | Step::DeleteVeth { .. } => Err(io(
                "a switch port's steps are the software path's (CniService::add_soft), not the VF host's",
            )),
        }
    }

    /// A VF driver (igbvf) takes the MAC its PF set only when it resets: the netdev is
    /// brought up and down here (under its own name and MAC) and the new MAC awaited.
    fn reset_vf_netdev(
        &mut self,
        ifindex: u32,
        name: &str,
        pf: &str,
        vf: u32,
        mac: Mac,
    ) -> Result<(), CniError> {
        let here = Netns::current().map_err(|e| CniError::TryAgainLater { why: e.to_string() })?;
        let same = Placement {
            ifname: name.to_string(),
            mac: None,
            mtu: None,
        };
        let failed = |e: netns::NetnsError| CniError::TryAgainLater {
            why: format!("VF {vf} of {pf}: cycling its netdev to take MAC {mac}: {e}"),
        };
        let before = self.vf_link(pf, vf)?.map(|l| l.2).unwrap_or(mac);
        netns::move_into(ifindex, &here, &same).map_err(failed)?;
        // Down again: igbvf resets there, and asks its PF for its MAC.
        let as_was = HostIdentity {
            name: name.to_string(),
            mac: before,
        };
        netns::restore(ifindex, &as_was).map_err(failed)?;
        let start = Instant::now();
        while start.elapsed() < MAC_SETTLE {
            match self.vf_link(pf, vf)? {
                Some((_, _, now)) if now != mac => std::thread::sleep(Duration::from_millis(20)),
                _ => return Ok(()),
            }
        }
        Err(CniError::TryAgainLater {
            why: format!(
                "VF {vf} of {pf} did not take MAC {mac} from its PF within {MAC_SETTLE:?}"
            ),
        })
    }

    /// The VF home under its old name and MAC: out of its namespace when it is there, else
    /// found here through its PF (it never left, or its namespace died and sent it back).
    fn move_back(
        &mut self,
        pf: &str,
        vf: u32,
        netns: &Path,
        inside: Option<u32>,
        mac: Mac,
        host: &HostLink,
    ) -> Result<(), CniError> {
        let identity = HostIdentity {
            name: host.name.clone(),
            mac: host.mac,
        };
        let mut why = String::new();
        if let Ok(ns) = Netns::open(netns) {
            // Inside with the attachment's MAC, or still its own (an ADD cut short before
            // the driver took the new one).
            for by in [mac, host.mac] {
                match netns::move_back(&ns, inside.unwrap_or(0), Some(by), &identity) {
                    Ok(_) => return Ok(()),
                    Err(e) => why = format!(" ({e})"),
                }
            }
        }
        match self.vf_link(pf, vf)? {
            Some((ifindex, ..)) => netns::restore(ifindex, &identity)
                .map_err(|e| CniError::TryAgainLater { why: e.to_string() }),
            None => Err(CniError::TryAgainLater {
                why: format!(
                    "VF {vf} of {pf} is neither in {} nor in the host namespace{why}",
                    netns.display()
                ),
            }),
        }
    }

    /// What the kernel shows of a VF attachment: its link in its namespace (by ifindex and
    /// MAC), and its VF settings on the PF.
    fn observe(&mut self, pf: &str, vf: u32, e: &book::Entry) -> Result<book::Observed, CniError> {
        let ifx = self.pf_ifindex(pf)?;
        let cfg = self
            .sriov
            .vf_config(ifx, vf)
            .map_err(|err| CniError::TryAgainLater {
                why: err.to_string(),
            })?
            .unwrap_or_else(|| VfConfig::clean(vf));
        let link = Netns::open(&e.netns).ok().and_then(|ns| {
            let links = ns.links().ok()?;
            let l = links
                .into_iter()
                .find(|l| Some(l.ifindex) == e.inside_ifindex && l.mac == Some(e.mac))?;
            Some(book::ObservedLink {
                name: l.name,
                mac: l.mac?,
            })
        });
        Ok(book::Observed {
            link,
            vlan: u16::try_from(cfg.vlan).unwrap_or(u16::MAX),
            qos: u8::try_from(cfg.qos).unwrap_or(u8::MAX),
            max_tx_rate_mbps: cfg.max_tx_rate.unwrap_or(0),
            min_tx_rate_mbps: cfg.min_tx_rate.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_networks_are_refused_with_code_7_and_switches_need_a_software_path() {
        let bare = CniService::new(PathBuf::from("/nonexistent"));
        let e = bare
            .served(&CniTarget::Uplink("0000:01:00.0".into()))
            .unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("\"uplink\""), "{e}");
        assert!(
            e.to_string().contains("not served by this vportd yet"),
            "{e}"
        );
        assert_eq!(
            bare.served(&CniTarget::Pool("ctr".into())).unwrap(),
            Target::Pool("ctr".into())
        );
        // Without the loop's software path a switch network is not available (50)...
        let e = bare.served(&CniTarget::Switch("sw0".into())).unwrap_err();
        assert_eq!(e.code(), 50, "{e}");
        let Response::CniError { code, msg, .. } = bare.answer(CniRequest::Status {
            target: CniTarget::Switch("sw0".into()),
        }) else {
            panic!("an error");
        };
        assert_eq!(code, 50, "{msg}");
        // ...and with it, it is served.
        let (link, _inbox) = soft_link();
        let svc = CniService::new(PathBuf::from("/nonexistent")).serving_switches(Some(link));
        assert_eq!(
            svc.served(&CniTarget::Switch("sw0".into())).unwrap(),
            Target::Switch("sw0".into())
        );
    }

    #[test]
    fn a_software_port_refuses_a_minimum_rate_and_trust_naming_the_key() {
        for (a, key) in [
            (
                VfAttributes {
                    min_tx_rate_mbps: Some(10),
                    ..VfAttributes::default()
                },
                "min_tx_rate_mbps",
            ),
            (
                VfAttributes {
                    trust: Some(true),
                    ..VfAttributes::default()
                },
                "trust",
            ),
        ] {
            let e = soft_attrs_served(&a).unwrap_err();
            assert_eq!(e.code(), 7);
            assert!(e.to_string().contains(&format!("\"{key}\"")), "{e}");
        }
        let fine = VfAttributes {
            vlan: Some(7),
            max_tx_rate_mbps: Some(100),
            spoofchk: Some(false),
            trust: Some(false),
            ..VfAttributes::default()
        };
        assert!(soft_attrs_served(&fine).is_ok());
    }

    #[test]
    fn a_port_is_served_when_the_snapshot_has_its_veth_and_else_the_reason_is_said() {
        let vport = soft_vport("vc-c1-0001");
        let snap = |edge: &str| Snapshot {
            ports: vec![
                serde_json::from_value(serde_json::json!({
                    "switch": "lab", "uplink": "", "port": vport, "vport": vport,
                    "netdev": "vc-c1-0001", "edge": edge, "rx_packets": 0, "rx_bytes": 0,
                    "tx_packets": 0, "tx_bytes": 0, "tx_flooded": 0, "learn_limited": 0,
                    "drops": {}
                }))
                .unwrap(),
            ],
            ..Snapshot::default()
        };
        let served = SoftAnswer {
            problems: vec![],
            snapshot: Some(snap("veth")),
        };
        assert!(port_served(&served, &vport, "lab").is_ok());
        let failed = SoftAnswer {
            problems: vec![
                format!("vPort {vport}: cannot make its veth: no such namespace"),
                "vPort other: unrelated".into(),
            ],
            snapshot: Some(snap("none")),
        };
        let e = port_served(&failed, &vport, "lab").unwrap_err();
        assert_eq!(e.code(), 11);
        assert!(e.to_string().contains("no such namespace"), "{e}");
        assert!(!e.to_string().contains("unrelated"), "{e}");
        let unknown = SoftAnswer {
            problems: vec![format!(
                "{vport} asks for a port on switch nope, which is not a [[switch]] of the host config"
            )],
            snapshot: Some(Snapshot::default()),
        };
        let e = port_served(&unknown, &vport, "nope").unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("\"switch\""), "{e}");
    }

    #[test]
    fn the_books_software_ports_are_served_with_their_attributes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(soft_ports(dir.path()).is_empty());
        std::fs::write(
            dir.path().join(ATTACHMENTS_FILE),
            r#"{"version":1,"attachments":[
              {"container_id":"c1","ifname":"eth0","network":"n","netns":"/run/netns/c1","target":{"switch":"lab"},"alloc":{"kind":"soft_port","switch":"lab","host_end":"vc-c1-0001"},"mac":"02:00:00:00:09:01","asked":{"vlan":7,"mtu":1400},"attrs":{"vlan":7,"mtu":1400},"phase":"reserved"},
              {"container_id":"c9","ifname":"eth0","network":"p","netns":"/run/netns/c9","target":{"pool":"p"},"alloc":{"kind":"vf","pool":"p","pf":"0000:01:00.0","vf":1},"mac":"02:00:00:00:09:02","asked":{},"attrs":{},"phase":"attached"}]}"#,
        )
        .unwrap();
        let ports = soft_ports(dir.path());
        assert_eq!(ports.len(), 1, "only the switch port: {ports:?}");
        let p = &ports[0];
        assert_eq!(
            (
                p.switch.as_str(),
                p.port.vport.as_str(),
                p.port.tap.as_str()
            ),
            ("lab", "cni:vc-c1-0001", "vc-c1-0001")
        );
        assert_eq!(p.port.mtu, Some(1400));
        assert_eq!(
            p.port.cfg.vlan,
            crate::switch::vlan::VlanMode::Access { vid: 7 }
        );
        assert_eq!(p.port.cfg.mac, Some("02:00:00:00:09:01".parse().unwrap()));
        assert!(!p.port.cfg.ingress_acl.is_empty(), "spoof check on");
        assert_eq!(
            p.port.attach,
            crate::provision::config::Attach::Veth {
                netns: "/run/netns/c1".into(),
                ifname: "eth0".into()
            }
        );
    }

    #[test]
    fn an_attachments_attributes_are_the_vf_settings_and_the_rest_is_clean() {
        let mac: Mac = "02:00:00:00:00:07".parse().unwrap();
        let a = VfAttributes {
            vlan: Some(100),
            qos: Some(2),
            max_tx_rate_mbps: Some(500),
            ..VfAttributes::default()
        };
        let c = vf_config(3, mac, &a);
        assert_eq!((c.vf, c.mac, c.vlan, c.qos), (3, mac, 100, 2));
        assert_eq!((c.max_tx_rate, c.min_tx_rate), (Some(500), Some(0)));
        assert_eq!(
            (c.spoofchk, c.trust, c.link_state),
            (Some(true), Some(false), None)
        );
        let clean = vf_config(3, Mac::ZERO, &VfAttributes::default());
        assert_eq!((clean.vlan, clean.max_tx_rate), (0, Some(0)));
    }

    #[test]
    fn status_of_a_pool_is_50_once_its_last_vf_is_held_and_fine_while_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let state = State {
            version: crate::provision::state::STATE_VERSION,
            pools: vec![Pool {
                name: "ctr".into(),
                pf: "0000:01:00.0".into(),
                vfs: vec![2, 3],
                driver: None,
                defaults: VfAttributes::default(),
            }],
            ..State::default()
        };
        state.save(&UserFiles, dir.path()).unwrap();
        let svc = CniService::new(dir.path().to_path_buf());
        let status = |target: CniTarget| match svc.answer(CniRequest::Status { target }) {
            Response::CniDone { .. } => Ok(()),
            Response::CniError { code, msg, .. } => Err((code, msg)),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(CniTarget::Pool("ctr".into())), Ok(()));
        let holder = |c: &str, vf: u32, phase: &str| {
            format!(
                r#"{{"container_id":"{c}","ifname":"eth0","network":"n","netns":"/run/netns/{c}","target":{{"pool":"ctr"}},"alloc":{{"kind":"vf","pool":"ctr","pf":"0000:01:00.0","vf":{vf}}},"mac":"02:00:00:00:09:0{vf}","asked":{{}},"attrs":{{}},"phase":"{phase}"}}"#
            )
        };
        let book = |entries: &[String]| {
            std::fs::write(
                dir.path().join(ATTACHMENTS_FILE),
                format!(r#"{{"version":1,"attachments":[{}]}}"#, entries.join(",")),
            )
            .unwrap()
        };
        book(&[holder("c2", 2, "attached")]);
        assert_eq!(status(CniTarget::Pool("ctr".into())), Ok(()));
        // The last VF held, even by an ADD that has not finished (or crashed): 50.
        book(&[holder("c2", 2, "attached"), holder("c3", 3, "reserved")]);
        let (code, msg) = status(CniTarget::Pool("ctr".into())).unwrap_err();
        assert_eq!(code, 50, "{msg}");
        assert!(
            msg.contains("pool ctr has no free VF: all 2 are attached or reserved"),
            "{msg}"
        );
        // A pool the state does not have is not available either.
        let (code, msg) = status(CniTarget::Pool("other".into())).unwrap_err();
        assert_eq!(code, 50, "{msg}");
        // An uplink network is not served: 7, naming the key.
        let (code, _) = status(CniTarget::Uplink("0000:01:00.0".into())).unwrap_err();
        assert_eq!(code, 7);
    }

    #[test]
    fn a_missing_book_is_empty_and_a_gone_namespace_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let svc = CniService::new(dir.path().to_path_buf());
        assert!(svc.gone_namespaces().is_empty());
        std::fs::write(
            dir.path().join(ATTACHMENTS_FILE),
            r#"{"version":1,"attachments":[{"container_id":"c9","ifname":"eth0","network":"n","netns":"/nonexistent/netns/c9","target":{"pool":"p"},"alloc":{"kind":"vf","pool":"p","pf":"0000:01:00.0","vf":1},"mac":"02:00:00:00:09:01","asked":{},"attrs":{},"phase":"attached"}]}"#,
        )
        .unwrap();
        let gone = svc.gone_namespaces();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].contains("container c9's eth0 on network n: its network namespace /nonexistent/netns/c9 is gone"), "{}", gone[0]);
    }
}

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
//! The software path (`switch = "..."` networks: a veth whose host end is a switch port) is
//! not served here yet: such calls get a CNI error saying so.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::attach::book::{self, Book, HostLink, Key, MacFrom, Request, Step, Target};
use crate::attach::cni::CniError;
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

/// How long a VF's netdev may take to show the MAC its PF just set (igbvf resets itself).
const MAC_SETTLE: Duration = Duration::from_secs(5);

/// The CNI half of the daemon.
pub struct CniService {
    state_dir: PathBuf,
    one_at_a_time: Mutex<()>,
}

impl CniService {
    pub fn new(state_dir: PathBuf) -> CniService {
        CniService {
            state_dir,
            one_at_a_time: Mutex::new(()),
        }
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
        match userfiles::read_text(&self.book_path()) {
            Ok(text) => Book::from_json(&text).map_err(|e| io(&e.to_string())),
            Err(FilesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Book::default())
            }
            Err(e) => Err(io(&e.to_string())),
        }
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
        let target = served(&call.target)?;
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
        let pools = self.pools()?;
        let (mut book, steps) = self.load()?.add(&pools, &req).map_err(|e| e.to_cni())?;
        self.save(&book)?;
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
        })
    }

    /// DEL: the entry back to `Reserved`, its release steps, then forgotten.
    fn release(&self, key: &CniKey) -> Result<(), CniError> {
        let key = self::key(key);
        let (book, steps) = self.load()?.del(&key);
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
        self.save(&book)?;
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
        let book::Allocation::Vf { pf, vf, .. } = &entry.alloc else {
            return Err(not_served("switch"));
        };
        let mut host = Host::live();
        let seen = host.observe(pf, *vf, entry)?;
        book::check(entry, &seen).map_err(|d| CniError::InvalidConfig {
            key: "prevResult".into(),
            problem: d.to_string(),
            hint: "delete the container (or its network) and add it again".into(),
        })
    }

    fn status(&self, target: &CniTarget) -> Result<(), CniError> {
        let name = match target {
            CniTarget::Pool(name) => name,
            CniTarget::Switch(_) => return Err(not_served("switch")),
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
        problem: format!("networks on an {key} are not served by this vportd yet (only pools are)"),
        hint: "name a [[pool]] of the host config: {\"type\": \"vportd\", \"pool\": \"NAME\"}"
            .into(),
    }
}

fn served(t: &CniTarget) -> Result<Target, CniError> {
    match t {
        CniTarget::Pool(p) => Ok(Target::Pool(p.clone())),
        CniTarget::Switch(_) => Err(not_served("switch")),
        CniTarget::Uplink(_) => Err(not_served("uplink")),
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
            | Step::DeleteVeth { .. } => Err(not_served("switch")),
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
    fn switch_and_uplink_networks_are_refused_with_code_7_naming_the_key() {
        for (t, key) in [
            (CniTarget::Switch("sw0".into()), "switch"),
            (CniTarget::Uplink("0000:01:00.0".into()), "uplink"),
        ] {
            let e = served(&t).unwrap_err();
            assert_eq!(e.code(), 7);
            assert!(e.to_string().contains(&format!("\"{key}\"")), "{e}");
            assert!(
                e.to_string().contains("not served by this vportd yet"),
                "{e}"
            );
        }
        assert_eq!(
            served(&CniTarget::Pool("ctr".into())).unwrap(),
            Target::Pool("ctr".into())
        );
        // STATUS says the same, before reading anything.
        let svc = CniService::new(PathBuf::from("/nonexistent"));
        let Response::CniError { code, msg, .. } = svc.answer(CniRequest::Status {
            target: CniTarget::Switch("sw0".into()),
        }) else {
            panic!("an error");
        };
        assert_eq!(code, 7, "{msg}");
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

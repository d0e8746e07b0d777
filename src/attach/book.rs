//! The attachment book: every container interface the daemon has connected, or begun to
//! connect, to a vPort, as the daemon's journal keeps it. Pure: each operation takes the
//! book and returns the new book and the host steps to run, so that who gets which VF and
//! MAC, and what a crash leaves behind, is decided here and tested without a kernel.
//!
//! The daemon's order of work is what makes a crash harmless:
//! - ADD: write the book [`Book::add`] returns (the entry `Reserved`) before its first step;
//!   for a VF, journal its netdev's name and MAC as they are ([`Book::note_host`]) before
//!   the first step changes them; write the book [`Book::attached`] returns after the last
//!   step. A crash anywhere in between
//!   leaves a `Reserved` entry that holds its VF and MAC, so nobody else gets them.
//! - DEL and GC: write the book [`Book::del`] or [`Book::gc`] returns (the entries back to
//!   `Reserved`: the host is about to be partly undone) before the steps, run them, and
//!   write the book without each entry ([`Book::forget`]) once its steps succeeded. A crash
//!   in between leaves the entry `Reserved`, so CHECK reports it, the same ADD again runs
//!   its attach steps again, and the next DEL or GC runs the same release steps again;
//!   every step is one that may run twice, or on a VF that never moved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cni::CniError;
use super::cni::env::Attachment;
use crate::model::mac::Mac;
use crate::model::pool::{Pool, VfAttributes};

/// The book's file format version. A file of a newer version is refused, not guessed at.
pub const VERSION: u32 = 1;

/// The spec's key of an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub container_id: String,
    pub ifname: String,
}

impl From<&Attachment> for Key {
    fn from(a: &Attachment) -> Key {
        Key {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "container {}'s {}", self.container_id, self.ifname)
    }
}

/// Where an attachment's vPort comes from: the network config's `pool`, `switch` or
/// `uplink` (by the PF's PCI address: the daemon resolves a MAC to it first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Pool(String),
    Switch(String),
    Uplink(String),
}

/// What an uplink network may take on its PF, as the daemon finds it at the call: the VFs
/// that exist and that no `[[pool]]`, no host-config vPort and no software switch's trunk
/// holds (the book's own holders are taken off by the book). An uplink network is served
/// as a pool of these VFs, so its VF handling is the pool path's, step for step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkRoom {
    /// The PF's PCI address.
    pub pf: String,
    /// The uplink's spare VFs, lowest first.
    pub spare: Vec<u32>,
    /// Why the spare VFs are what they are, for an error when none is free (e.g. "7 VFs:
    /// 0 trunks the switch, 1-3 are pool ctr's").
    pub accounting: String,
}

impl UplinkRoom {
    /// The pool the book serves the uplink's VFs from (named `uplink:<PF>`, a name no
    /// `[[pool]]` can have).
    pub fn as_pool(&self) -> Pool {
        Pool {
            name: uplink_pool_name(&self.pf),
            pf: self.pf.clone(),
            vfs: self.spare.clone(),
            driver: None,
            defaults: VfAttributes::default(),
        }
    }
}

/// The book's pool name of an uplink network's VFs.
pub fn uplink_pool_name(pf: &str) -> String {
    format!("uplink:{pf}")
}

/// Where the attachment's MAC came from, so a refusal names what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacFrom {
    /// `runtimeConfig.mac` (the `mac` capability).
    Runtime,
    /// `CNI_ARGS`' `MAC` (podman's `--mac-address`).
    Args,
    /// Derived from the attachment's key.
    Derived,
}

/// An ADD, as the daemon hands it to the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub key: Key,
    pub network: String,
    pub netns: PathBuf,
    pub target: Target,
    pub mac: Mac,
    pub mac_from: MacFrom,
    /// What the network config asks for; a pool's defaults fill the rest.
    pub attrs: VfAttributes,
}

/// What an attachment holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Allocation {
    /// VF `vf` of the PF at PCI address `pf`, from `pool`.
    Vf { pool: String, pf: String, vf: u32 },
    /// A port on a software switch: a veth whose end here is `host_end`.
    SoftPort { switch: String, host_end: String },
}

/// How far an ADD got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Allocated, the host steps not (all) done: what a crash in the middle of an ADD leaves.
    Reserved,
    /// Every step done.
    Attached,
}

/// A VF's netdev as it was in the host before it moved, for the way back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLink {
    pub name: String,
    pub mac: Mac,
}

/// What the steps of an ADD found out, recorded when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attached {
    /// The link's ifindex inside the container's namespace.
    pub inside_ifindex: u32,
    /// The veth's end here (software path).
    pub host_ifindex: Option<u32>,
}

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub key: Key,
    pub network: String,
    pub netns: PathBuf,
    pub target: Target,
    pub alloc: Allocation,
    pub mac: Mac,
    /// As asked: a repeated ADD is the same one when this is the same.
    pub asked: VfAttributes,
    /// As given: `asked` over the pool's defaults.
    pub attrs: VfAttributes,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_ifindex: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifindex: Option<u32>,
    /// Why an uplink network's attachment is on the software path (no VF was free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Entry {
    fn same_request(&self, r: &Request) -> bool {
        self.network == r.network
            && self.netns == r.netns
            && self.target == r.target
            && self.mac == r.mac
            && self.asked == r.attrs
    }

    fn vf(&self) -> Option<(&str, u32)> {
        match &self.alloc {
            Allocation::Vf { pf, vf, .. } => Some((pf, *vf)),
            Allocation::SoftPort { .. } => None,
        }
    }
}

/// One thing the daemon does to the host for an attachment. Each may run twice, and the
/// release steps may run for a VF that never moved or a veth never made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// On the PF: the VF's admin MAC, VLAN and priority, rates, spoof checking and trust
    /// (None: the clean value). The VF's netdev takes the admin MAC.
    ConfigureVf {
        pf: String,
        vf: u32,
        mac: Mac,
        attrs: VfAttributes,
    },
    /// The VF's netdev (found through the PF's `virtfn<vf>`) into `netns` as `ifname`, MAC
    /// and MTU set, up.
    MoveVfIn {
        pf: String,
        vf: u32,
        netns: PathBuf,
        ifname: String,
        mac: Mac,
        mtu: Option<u32>,
    },
    /// A veth pair: `host_end` here, its peer made inside `netns` as `ifname`.
    CreateVeth {
        netns: PathBuf,
        host_end: String,
        ifname: String,
        mac: Mac,
        mtu: Option<u32>,
    },
    /// `host_end` as a port of the software switch, with the attachment's MAC and attributes.
    AddSwitchPort {
        switch: String,
        host_end: String,
        mac: Mac,
        attrs: VfAttributes,
    },
    /// On the PF: no admin MAC, VLAN 0, no rate limit, spoof checking on, trust off. Runs
    /// before the move back: a VF's driver may not change a MAC its PF set.
    CleanVf {
        pf: String,
        vf: u32,
    },
    /// The VF's netdev back here, down, under `host.name` with `host.mac`: out of `netns`
    /// (found there by `inside_ifindex` and `mac`) when it is there, else found here through
    /// the PF's `virtfn<vf>` (it never moved, or its namespace died, which sends a VF back
    /// to the initial namespace by itself). `host` None: nothing was changed, nothing to do.
    MoveVfBack {
        pf: String,
        vf: u32,
        netns: PathBuf,
        inside_ifindex: Option<u32>,
        mac: Mac,
        host: Option<HostLink>,
    },
    RemoveSwitchPort {
        switch: String,
        host_end: String,
    },
    /// The veth pair (both ends) by its end here; `ifindex` None: by name and kind only.
    DeleteVeth {
        host_end: String,
        ifindex: Option<u32>,
    },
}

/// The steps that free one attachment; the daemon forgets it once they succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub key: Key,
    pub steps: Vec<Step>,
}

/// A pool's use, for STATUS, `status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub pool: String,
    pub total: usize,
    pub attached: usize,
    /// Held by an ADD that has not finished (or crashed: a DEL or GC frees it).
    pub reserved: usize,
    pub free: usize,
}

/// Errors of the book's operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// Two attachments would answer to one MAC.
    #[error("MAC {mac} is already {holder}'s on network {network}")]
    MacInUse {
        mac: Mac,
        holder: Key,
        network: String,
        from: MacFrom,
    },
    /// Every VF of the pool is held.
    #[error("pool {pool} has no free VF: all {total} are attached or reserved")]
    PoolFull { pool: String, total: usize },
    /// No spare VF of the uplink is free, and no software path takes the attachment.
    #[error(
        "uplink {pf} has no free VF ({accounting}; {held} held by attachments) and no software path for it: {why}"
    )]
    UplinkFull {
        pf: String,
        accounting: String,
        held: usize,
        why: String,
    },
    /// The network names a pool the host config does not have.
    #[error("pool {pool} is not in the host config (it has {known})")]
    UnknownPool { pool: String, known: String },
    /// An ADD for a key that is attached otherwise.
    #[error("{key} is already attached to network {network} in {netns}, otherwise than asked")]
    KeyTaken {
        key: Key,
        network: String,
        netns: String,
    },
    /// A step's outcome for an attachment the book does not hold.
    #[error("{key} is not in the attachment book")]
    NotInBook { key: Key },
    #[error(
        "the attachment book is version {found}, written by a newer vportd; this one reads version {known} and older"
    )]
    NewerVersion { found: u32, known: u32 },
    #[error("the attachment book cannot be read: {problem}")]
    Unreadable { problem: String },
}

impl BookError {
    /// The CNI error the plugin answers with.
    pub fn to_cni(&self) -> CniError {
        let hint = "give each container a MAC of its own, or none: vportd derives one from the container id";
        match self {
            BookError::MacInUse {
                from: MacFrom::Args,
                ..
            } => CniError::BadEnv {
                var: "CNI_ARGS",
                problem: format!("holds a MAC that is taken: {self}"),
            },
            BookError::MacInUse { .. } => {
                CniError::invalid("runtimeConfig.mac", format!("is taken: {self}"), hint)
            }
            BookError::PoolFull { .. } | BookError::UplinkFull { .. } => CniError::TryAgainLater {
                why: self.to_string(),
            },
            BookError::UnknownPool { .. } => CniError::invalid(
                "pool",
                self.to_string(),
                "a network's pool is the name of a [[pool]] in vportd's host config",
            ),
            BookError::KeyTaken { .. } => CniError::BadEnv {
                var: "CNI_CONTAINERID",
                problem: format!(
                    "and CNI_IFNAME name an attachment already made: {self}; DEL it first"
                ),
            },
            BookError::NotInBook { .. }
            | BookError::NewerVersion { .. }
            | BookError::Unreadable { .. } => CniError::TryAgainLater {
                why: self.to_string(),
            },
        }
    }
}

/// The name of a veth's end in the host: "vc-" and the container id's first 7 characters
/// (letters and digits) and 4 hex digits of FNV-1a over the key, 15 bytes at most, the
/// same on every call (a DEL after a crash finds it by this name).
pub fn host_end_name(key: &Key) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key
        .container_id
        .bytes()
        .chain([0])
        .chain(key.ifname.bytes())
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let head: String = key
        .container_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(7)
        .collect();
    format!("vc-{head}-{:04x}", (h ^ (h >> 16)) & 0xffff)
}

/// The attachments, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    entries: BTreeMap<Key, Entry>,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    attachments: Vec<Entry>,
}

impl Book {
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// An ADD: the new book with the entry `Reserved`, and the steps that attach it. The
    /// same ADD again gives the same book: no steps when it is attached, the same steps
    /// when it is still reserved (a retry after a crash).
    pub fn add(&self, pools: &[Pool], req: &Request) -> Result<(Book, Vec<Step>), BookError> {
        if let Some(e) = self.entries.get(&req.key) {
            if !e.same_request(req) {
                return Err(BookError::KeyTaken {
                    key: req.key.clone(),
                    network: e.network.clone(),
                    netns: e.netns.display().to_string(),
                });
            }
            let steps = match e.phase {
                Phase::Attached => Vec::new(),
                Phase::Reserved => attach_steps(e),
            };
            return Ok((self.clone(), steps));
        }
        if let Some(other) = self.entries.values().find(|e| e.mac == req.mac) {
            return Err(BookError::MacInUse {
                mac: req.mac,
                holder: other.key.clone(),
                network: other.network.clone(),
                from: req.mac_from,
            });
        }
        let (alloc, attrs) = match &req.target {
            Target::Pool(name) => {
                let pool = pools.iter().find(|p| p.name == *name).ok_or_else(|| {
                    BookError::UnknownPool {
                        pool: name.clone(),
                        known: known_pools(pools),
                    }
                })?;
                let vf = self.free_vfs(pool).next().ok_or(BookError::PoolFull {
                    pool: name.clone(),
                    total: pool.vfs.len(),
                })?;
                let alloc = Allocation::Vf {
                    pool: name.clone(),
                    pf: pool.pf.clone(),
                    vf,
                };
                (alloc, req.attrs.or(pool.defaults))
            }
            Target::Switch(switch) => {
                let alloc = Allocation::SoftPort {
                    switch: switch.clone(),
                    host_end: host_end_name(&req.key),
                };
                (alloc, req.attrs)
            }
            Target::Uplink(pf) => {
                let name = uplink_pool_name(pf);
                let pool = pools.iter().find(|p| p.name == name);
                let vf = pool.and_then(|p| self.free_vfs(p).next()).ok_or_else(|| {
                    BookError::UplinkFull {
                        pf: pf.clone(),
                        accounting: "no spare VF was given".into(),
                        held: 0,
                        why: "none was looked for".into(),
                    }
                })?;
                let alloc = Allocation::Vf {
                    pool: name,
                    pf: pf.clone(),
                    vf,
                };
                (alloc, req.attrs)
            }
        };
        let entry = Entry {
            key: req.key.clone(),
            network: req.network.clone(),
            netns: req.netns.clone(),
            target: req.target.clone(),
            alloc,
            mac: req.mac,
            asked: req.attrs,
            attrs,
            phase: Phase::Reserved,
            host: None,
            inside_ifindex: None,
            host_ifindex: None,
            reason: None,
        };
        let steps = attach_steps(&entry);
        let mut book = self.clone();
        book.entries.insert(req.key.clone(), entry);
        Ok((book, steps))
    }

    /// An ADD on an uplink network, placed as `plan` places a vPort: a free VF of `room`
    /// as a pool's ([`Book::add`]); when none is free, the software path `software` names
    /// (`Ok(switch)`: a port on the uplink's external switch, the reason recorded in the
    /// entry), else [`BookError::UplinkFull`] naming the accounting and why not.
    pub fn add_on_uplink(
        &self,
        room: &UplinkRoom,
        software: impl FnOnce() -> Result<String, String>,
        req: &Request,
    ) -> Result<(Book, Vec<Step>), BookError> {
        let pool = room.as_pool();
        match self.add(std::slice::from_ref(&pool), req) {
            Err(BookError::UplinkFull { .. }) => {}
            placed => return placed,
        }
        let held = room.spare.len() - self.free_vfs(&pool).count();
        let switch = software().map_err(|why| BookError::UplinkFull {
            pf: room.pf.clone(),
            accounting: room.accounting.clone(),
            held,
            why,
        })?;
        let mut soft = req.clone();
        soft.target = Target::Switch(switch.clone());
        let (mut book, steps) = self.add(&[], &soft)?;
        let e = book
            .entries
            .get_mut(&req.key)
            .ok_or_else(|| BookError::NotInBook {
                key: req.key.clone(),
            })?;
        e.target = req.target.clone();
        e.reason = Some(format!(
            "uplink {} has no free VF ({}; {held} held by attachments): a port on its external switch {switch}",
            room.pf, room.accounting
        ));
        Ok((book, steps))
    }

    /// STATUS for an uplink network: fine while a spare VF is free or the software path
    /// takes attachments (`software` Ok), else code 50 naming the accounting and why not.
    pub fn uplink_status(
        &self,
        room: &UplinkRoom,
        software: impl FnOnce() -> Result<String, String>,
    ) -> Result<usize, CniError> {
        let pool = room.as_pool();
        let free = self.free_vfs(&pool).count();
        if free > 0 {
            return Ok(free);
        }
        match software() {
            Ok(_) => Ok(0),
            Err(why) => Err(CniError::NotAvailable {
                why: BookError::UplinkFull {
                    pf: room.pf.clone(),
                    accounting: room.accounting.clone(),
                    held: room.spare.len(),
                    why,
                }
                .to_string(),
            }),
        }
    }

    /// The pool's VFs no entry holds, lowest first.
    fn free_vfs<'a>(&'a self, pool: &'a Pool) -> impl Iterator<Item = u32> + 'a {
        let held: BTreeSet<(&str, u32)> = self.entries.values().filter_map(Entry::vf).collect();
        pool.vfs
            .iter()
            .copied()
            .filter(move |vf| !held.contains(&(pool.pf.as_str(), *vf)))
    }

    /// Records a VF netdev's name and MAC before the first step changes them.
    pub fn note_host(&self, key: &Key, host: HostLink) -> Result<Book, BookError> {
        self.edit(key, |e| e.host = Some(host))
    }

    /// Records that every step of the ADD is done.
    pub fn attached(&self, key: &Key, facts: Attached) -> Result<Book, BookError> {
        self.edit(key, |e| {
            e.phase = Phase::Attached;
            e.inside_ifindex = Some(facts.inside_ifindex);
            e.host_ifindex = facts.host_ifindex;
        })
    }

    fn edit(&self, key: &Key, f: impl FnOnce(&mut Entry)) -> Result<Book, BookError> {
        let mut book = self.clone();
        let e = book
            .entries
            .get_mut(key)
            .ok_or_else(|| BookError::NotInBook { key: key.clone() })?;
        f(e);
        Ok(book)
    }

    /// A DEL: the book with the entry back to `Reserved` (to write before the steps) and
    /// the steps that free what it holds; [`Book::forget`] it once they succeeded. An
    /// unknown key (a DEL repeated, or for a container never attached) has none.
    pub fn del(&self, key: &Key) -> (Book, Vec<Step>) {
        let mut book = self.clone();
        let Some(e) = book.entries.get_mut(key) else {
            return (book, Vec::new());
        };
        e.phase = Phase::Reserved;
        let steps = release_steps(e);
        (book, steps)
    }

    /// The book without `key`, once its release steps are done.
    pub fn forget(&self, key: &Key) -> Book {
        let mut book = self.clone();
        book.entries.remove(key);
        book
    }

    /// A GC of `network`: every attachment of that network not in `valid` is released, as
    /// [`Book::del`] releases one. Other networks' attachments are not this call's to
    /// judge (the spec's list is per network).
    pub fn gc(&self, network: &str, valid: &[Key]) -> (Book, Vec<Release>) {
        let keep: BTreeSet<&Key> = valid.iter().collect();
        let mut book = self.clone();
        let mut out = Vec::new();
        for e in book.entries.values_mut() {
            if e.network == network && !keep.contains(&e.key) {
                e.phase = Phase::Reserved;
                out.push(Release {
                    key: e.key.clone(),
                    steps: release_steps(e),
                });
            }
        }
        (book, out)
    }

    /// How much of `pool` is in use.
    pub fn capacity(&self, pool: &Pool) -> Capacity {
        let mut c = Capacity {
            pool: pool.name.clone(),
            total: pool.vfs.len(),
            attached: 0,
            reserved: 0,
            free: self.free_vfs(pool).count(),
        };
        for e in self.entries.values() {
            if e.vf()
                .is_some_and(|(pf, vf)| pf == pool.pf && pool.vfs.contains(&vf))
            {
                match e.phase {
                    Phase::Attached => c.attached += 1,
                    Phase::Reserved => c.reserved += 1,
                }
            }
        }
        c
    }

    /// STATUS for a network on `pool`: its capacity, or code 50 when nothing is free.
    pub fn status(&self, pool: &Pool) -> Result<Capacity, CniError> {
        let c = self.capacity(pool);
        if c.free == 0 {
            return Err(CniError::NotAvailable {
                why: BookError::PoolFull {
                    pool: c.pool,
                    total: c.total,
                }
                .to_string(),
            });
        }
        Ok(c)
    }

    /// The journal's file: `{"version": 1, "attachments": [...]}`, entries by key.
    pub fn to_json(&self) -> String {
        let file = File {
            version: VERSION,
            attachments: self.entries.values().cloned().collect(),
        };
        serde_json::to_string_pretty(&file).expect("the book's types always serialize")
    }

    pub fn from_json(text: &str) -> Result<Book, BookError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let unreadable = |e: serde_json::Error| BookError::Unreadable {
            problem: e.to_string(),
        };
        let v: Versioned = serde_json::from_str(text).map_err(unreadable)?;
        if v.version > VERSION {
            return Err(BookError::NewerVersion {
                found: v.version,
                known: VERSION,
            });
        }
        let file: File = serde_json::from_str(text).map_err(unreadable)?;
        let mut entries = BTreeMap::new();
        for e in file.attachments {
            if let Some(dup) = entries.insert(e.key.clone(), e) {
                return Err(BookError::Unreadable {
                    problem: format!("{} is in it twice", dup.key),
                });
            }
        }
        Ok(Book { entries })
    }
}

fn known_pools(pools: &[Pool]) -> String {
    if pools.is_empty() {
        return "none".into();
    }
    pools
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn attach_steps(e: &Entry) -> Vec<Step> {
    match &e.alloc {
        Allocation::Vf { pf, vf, .. } => vec![
            Step::ConfigureVf {
                pf: pf.clone(),
                vf: *vf,
                mac: e.mac,
                attrs: e.attrs,
            },
            Step::MoveVfIn {
                pf: pf.clone(),
                vf: *vf,
                netns: e.netns.clone(),
                ifname: e.key.ifname.clone(),
                mac: e.mac,
                mtu: e.attrs.mtu,
            },
        ],
        Allocation::SoftPort { switch, host_end } => vec![
            Step::CreateVeth {
                netns: e.netns.clone(),
                host_end: host_end.clone(),
                ifname: e.key.ifname.clone(),
                mac: e.mac,
                mtu: e.attrs.mtu,
            },
            Step::AddSwitchPort {
                switch: switch.clone(),
                host_end: host_end.clone(),
                mac: e.mac,
                attrs: e.attrs,
            },
        ],
    }
}

fn release_steps(e: &Entry) -> Vec<Step> {
    match &e.alloc {
        Allocation::Vf { pf, vf, .. } => vec![
            Step::CleanVf {
                pf: pf.clone(),
                vf: *vf,
            },
            Step::MoveVfBack {
                pf: pf.clone(),
                vf: *vf,
                netns: e.netns.clone(),
                inside_ifindex: e.inside_ifindex,
                mac: e.mac,
                host: e.host.clone(),
            },
        ],
        Allocation::SoftPort { switch, host_end } => vec![
            Step::RemoveSwitchPort {
                switch: switch.clone(),
                host_end: host_end.clone(),
            },
            Step::DeleteVeth {
                host_end: host_end.clone(),
                ifindex: e.host_ifindex,
            },
        ],
    }
}

/// What the kernel (or the switch) shows of an attachment, for CHECK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The attachment's link, looked for in its recorded namespace by ifindex and MAC;
    /// None when it is not there.
    pub link: Option<ObservedLink>,
    /// The VF's (or switch port's) VLAN; 0 is none.
    pub vlan: u16,
    pub qos: u8,
    /// 0 is no limit.
    pub max_tx_rate_mbps: u32,
    pub min_tx_rate_mbps: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLink {
    pub name: String,
    pub mac: Mac,
}

/// The first way the kernel differs from the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Difference {
    #[error("{key} is not attached yet: its ADD did not finish")]
    NotAttached { key: Key },
    #[error("{key}'s link is not in network namespace {netns}")]
    Namespace { key: Key, netns: String },
    #[error("{key}'s link is named {found}, not {want}")]
    Name {
        key: Key,
        want: String,
        found: String,
    },
    #[error("{key}'s link has MAC {found}, not {want}")]
    Mac { key: Key, want: Mac, found: Mac },
    #[error("{key} is on VLAN {found} priority {found_qos}, not VLAN {want} priority {want_qos}")]
    Vlan {
        key: Key,
        want: u16,
        want_qos: u8,
        found: u16,
        found_qos: u8,
    },
    #[error("{key}'s {which} rate is {found} Mbit/s, not {want} (0 is no limit)")]
    Rate {
        key: Key,
        which: &'static str,
        want: u32,
        found: u32,
    },
}

/// CHECK: the record against what the kernel shows, in the order namespace, name, MAC,
/// VLAN, rate.
pub fn check(e: &Entry, seen: &Observed) -> Result<(), Difference> {
    let key = e.key.clone();
    if e.phase == Phase::Reserved {
        return Err(Difference::NotAttached { key });
    }
    let Some(link) = &seen.link else {
        return Err(Difference::Namespace {
            key,
            netns: e.netns.display().to_string(),
        });
    };
    if link.name != e.key.ifname {
        return Err(Difference::Name {
            want: e.key.ifname.clone(),
            found: link.name.clone(),
            key,
        });
    }
    if link.mac != e.mac {
        return Err(Difference::Mac {
            key,
            want: e.mac,
            found: link.mac,
        });
    }
    let (want, want_qos) = (e.attrs.vlan.unwrap_or(0), e.attrs.qos.unwrap_or(0));
    if (want, want_qos) != (seen.vlan, seen.qos) {
        return Err(Difference::Vlan {
            key,
            want,
            want_qos,
            found: seen.vlan,
            found_qos: seen.qos,
        });
    }
    for (which, want, found) in [
        ("max", e.attrs.max_tx_rate_mbps, seen.max_tx_rate_mbps),
        ("min", e.attrs.min_tx_rate_mbps, seen.min_tx_rate_mbps),
    ] {
        if want.unwrap_or(0) != found {
            return Err(Difference::Rate {
                key,
                which,
                want: want.unwrap_or(0),
                found,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PF_A: &str = "0000:01:00.0";
    const PF_B: &str = "0000:02:00.0";

    fn pools() -> Vec<Pool> {
        vec![
            Pool {
                name: "a".into(),
                pf: PF_A.into(),
                vfs: vec![0, 1, 2],
                driver: None,
                defaults: VfAttributes {
                    vlan: Some(7),
                    max_tx_rate_mbps: Some(1000),
                    ..VfAttributes::default()
                },
            },
            Pool {
                name: "b".into(),
                pf: PF_B.into(),
                vfs: vec![1, 3],
                driver: Some("igbvf".into()),
                defaults: VfAttributes::default(),
            },
        ]
    }

    fn key(c: &str) -> Key {
        Key {
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    fn mac(last: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, last])
    }

    fn req(c: &str, target: Target, m: u8) -> Request {
        let network = match &target {
            Target::Pool(p) => format!("net-{p}"),
            Target::Switch(s) => format!("net-{s}"),
            Target::Uplink(u) => format!("net-{u}"),
        };
        Request {
            key: key(c),
            network,
            netns: format!("/var/run/netns/{c}").into(),
            target,
            mac: mac(m),
            mac_from: MacFrom::Runtime,
            attrs: VfAttributes::default(),
        }
    }

    fn pool(p: &str) -> Target {
        Target::Pool(p.into())
    }

    fn vf_of(book: &Book, c: &str) -> u32 {
        match &book.get(&key(c)).unwrap().alloc {
            Allocation::Vf { vf, .. } => *vf,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pool_gives_its_lowest_free_vf_with_its_defaults() {
        let pools = pools();
        let mut r = req("c1", pool("a"), 1);
        r.attrs.vlan = Some(100);
        let (book, steps) = Book::default().add(&pools, &r).unwrap();
        let e = book.get(&key("c1")).unwrap();
        assert_eq!(e.phase, Phase::Reserved);
        let attrs = VfAttributes {
            vlan: Some(100),
            max_tx_rate_mbps: Some(1000),
            ..VfAttributes::default()
        };
        assert_eq!(e.attrs, attrs);
        assert_eq!(
            steps,
            vec![
                Step::ConfigureVf {
                    pf: PF_A.into(),
                    vf: 0,
                    mac: mac(1),
                    attrs,
                },
                Step::MoveVfIn {
                    pf: PF_A.into(),
                    vf: 0,
                    netns: "/var/run/netns/c1".into(),
                    ifname: "eth0".into(),
                    mac: mac(1),
                    mtu: None,
                },
            ]
        );
        let (book, _) = book.add(&pools, &req("c2", pool("a"), 2)).unwrap();
        let (book, _) = book.add(&pools, &req("c3", pool("a"), 3)).unwrap();
        assert_eq!(
            [vf_of(&book, "c1"), vf_of(&book, "c2"), vf_of(&book, "c3")],
            [0, 1, 2]
        );
        let book = book.forget(&key("c2"));
        let (book, _) = book.add(&pools, &req("c4", pool("a"), 4)).unwrap();
        assert_eq!(vf_of(&book, "c4"), 1);
    }

    #[test]
    fn the_same_add_again_changes_nothing_and_resumes_a_reserved_one() {
        let pools = pools();
        let r = req("c1", pool("b"), 1);
        let (book, steps) = Book::default().add(&pools, &r).unwrap();
        let (again, steps_again) = book.add(&pools, &r).unwrap();
        assert_eq!((&again, &steps_again), (&book, &steps));
        let done = book
            .attached(
                &key("c1"),
                Attached {
                    inside_ifindex: 9,
                    host_ifindex: None,
                },
            )
            .unwrap();
        let (again, steps_again) = done.add(&pools, &r).unwrap();
        assert_eq!(again, done);
        assert!(steps_again.is_empty());
        let mut other = r.clone();
        other.netns = "/var/run/netns/elsewhere".into();
        let err = done.add(&pools, &other).unwrap_err();
        assert_eq!(
            err.to_cni().to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":4,"msg":"CNI_CONTAINERID and CNI_IFNAME name an attachment already made: container c1's eth0 is already attached to network net-b in /var/run/netns/c1, otherwise than asked; DEL it first"}"#
        );
    }

    #[test]
    fn a_mac_in_use_is_refused_naming_its_holder() {
        let pools = pools();
        let (book, _) = Book::default()
            .add(&pools, &req("c1", pool("a"), 1))
            .unwrap();
        let err = book.add(&pools, &req("c2", pool("b"), 1)).unwrap_err();
        assert_eq!(
            err.to_cni().to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"runtimeConfig.mac\": is taken: MAC 02:00:00:00:00:01 is already container c1's eth0's on network net-a","details":"give each container a MAC of its own, or none: vportd derives one from the container id"}"#
        );
        let mut r = req("c2", Target::Switch("s".into()), 1);
        r.mac_from = MacFrom::Args;
        assert_eq!(book.add(&pools, &r).unwrap_err().to_cni().code(), 4);
    }

    #[test]
    fn a_full_pool_says_try_again_and_status_says_50() {
        let pools = pools();
        let b = &pools[1];
        let mut book = Book::default();
        assert_eq!(
            book.status(b).unwrap(),
            Capacity {
                pool: "b".into(),
                total: 2,
                attached: 0,
                reserved: 0,
                free: 2
            }
        );
        for (i, c) in ["c1", "c2"].into_iter().enumerate() {
            book = book.add(&pools, &req(c, pool("b"), i as u8)).unwrap().0;
        }
        book = book.attached(&key("c1"), Attached::default()).unwrap();
        let c = book.capacity(b);
        assert_eq!((c.attached, c.reserved, c.free), (1, 1, 0));
        assert_eq!(
            book.status(b).unwrap_err().to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":50,"msg":"pool b has no free VF: all 2 are attached or reserved"}"#
        );
        let err = book.add(&pools, &req("c3", pool("b"), 9)).unwrap_err();
        assert_eq!(err.to_cni().code(), 11);
        let err = book.add(&pools, &req("c3", pool("x"), 9)).unwrap_err();
        assert_eq!(
            err.to_cni().to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"pool\": pool x is not in the host config (it has a, b)","details":"a network's pool is the name of a [[pool]] in vportd's host config"}"#
        );
    }

    #[test]
    fn del_frees_what_an_entry_holds_and_an_unknown_key_is_nothing_to_do() {
        let pools = pools();
        let (book, _) = Book::default()
            .add(&pools, &req("c1", pool("a"), 1))
            .unwrap();
        assert_eq!(book.del(&key("nobody")), (book.clone(), Vec::new()));
        let host = HostLink {
            name: "enp1s0f0v0".into(),
            mac: mac(0x99),
        };
        let book = book.note_host(&key("c1"), host.clone()).unwrap();
        let book = book
            .attached(
                &key("c1"),
                Attached {
                    inside_ifindex: 12,
                    host_ifindex: None,
                },
            )
            .unwrap();
        let (during, steps) = book.del(&key("c1"));
        assert_eq!(during.get(&key("c1")).unwrap().phase, Phase::Reserved);
        assert_eq!(during.forget(&key("c1")), Book::default());
        assert_eq!(
            steps,
            vec![
                Step::CleanVf {
                    pf: PF_A.into(),
                    vf: 0
                },
                Step::MoveVfBack {
                    pf: PF_A.into(),
                    vf: 0,
                    netns: "/var/run/netns/c1".into(),
                    inside_ifindex: Some(12),
                    mac: mac(1),
                    host: Some(host),
                },
            ]
        );
        // A software port: the switch port, then the veth.
        let (book, steps) = Book::default()
            .add(&pools, &req("c2", Target::Switch("s".into()), 2))
            .unwrap();
        let host_end = host_end_name(&key("c2"));
        assert_eq!(
            steps,
            vec![
                Step::CreateVeth {
                    netns: "/var/run/netns/c2".into(),
                    host_end: host_end.clone(),
                    ifname: "eth0".into(),
                    mac: mac(2),
                    mtu: None,
                },
                Step::AddSwitchPort {
                    switch: "s".into(),
                    host_end: host_end.clone(),
                    mac: mac(2),
                    attrs: VfAttributes::default(),
                },
            ]
        );
        assert_eq!(
            book.del(&key("c2")).1,
            vec![
                Step::RemoveSwitchPort {
                    switch: "s".into(),
                    host_end: host_end.clone(),
                },
                Step::DeleteVeth {
                    host_end,
                    ifindex: None,
                },
            ]
        );
    }

    #[test]
    fn host_end_names_fit_and_are_stable() {
        let long = Key {
            container_id: "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4".into(),
            ifname: "eth0".into(),
        };
        let name = host_end_name(&long);
        assert_eq!(name.len(), 15, "{name}");
        // Pinned: a change would orphan the veths of a running daemon's attachments.
        assert_eq!(name, "vc-3f2a9c1-e72e");
        let net1 = Key {
            ifname: "net1".into(),
            ..long.clone()
        };
        assert_ne!(host_end_name(&net1), name);
        assert!(host_end_name(&key("a.b")).starts_with("vc-ab-"));
    }

    #[test]
    fn gc_releases_the_networks_attachments_it_is_not_told_to_keep() {
        let pools = pools();
        let mut book = Book::default();
        for (i, (c, t)) in [("c1", "a"), ("c2", "a"), ("c3", "b")]
            .into_iter()
            .enumerate()
        {
            book = book.add(&pools, &req(c, pool(t), i as u8)).unwrap().0;
        }
        let (during, released) = book.gc("net-a", &[key("c2")]);
        assert_eq!(
            released.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
            vec![key("c1")]
        );
        assert_eq!(during.forget(&key("c1")), book.forget(&key("c1")));
    }

    fn attached_entry() -> Entry {
        let pools = pools();
        let mut r = req("c1", pool("a"), 1);
        r.attrs.qos = Some(3);
        let (book, _) = Book::default().add(&pools, &r).unwrap();
        let book = book
            .attached(
                &key("c1"),
                Attached {
                    inside_ifindex: 4,
                    host_ifindex: None,
                },
            )
            .unwrap();
        book.get(&key("c1")).unwrap().clone()
    }

    #[test]
    fn check_names_the_first_difference() {
        let e = attached_entry();
        let good = Observed {
            link: Some(ObservedLink {
                name: "eth0".into(),
                mac: mac(1),
            }),
            vlan: 7,
            qos: 3,
            max_tx_rate_mbps: 1000,
            min_tx_rate_mbps: 0,
        };
        assert_eq!(check(&e, &good), Ok(()));
        let cases: Vec<(Observed, &str)> = vec![
            (
                Observed {
                    link: None,
                    ..good.clone()
                },
                "container c1's eth0's link is not in network namespace /var/run/netns/c1",
            ),
            (
                Observed {
                    link: Some(ObservedLink {
                        name: "eth1".into(),
                        mac: mac(5),
                    }),
                    ..good.clone()
                },
                "container c1's eth0's link is named eth1, not eth0",
            ),
            (
                Observed {
                    link: Some(ObservedLink {
                        name: "eth0".into(),
                        mac: mac(5),
                    }),
                    vlan: 0,
                    ..good.clone()
                },
                "container c1's eth0's link has MAC 02:00:00:00:00:05, not 02:00:00:00:00:01",
            ),
            (
                Observed {
                    vlan: 0,
                    max_tx_rate_mbps: 0,
                    ..good.clone()
                },
                "container c1's eth0 is on VLAN 0 priority 3, not VLAN 7 priority 3",
            ),
            (
                Observed {
                    max_tx_rate_mbps: 0,
                    ..good.clone()
                },
                "container c1's eth0's max rate is 0 Mbit/s, not 1000 (0 is no limit)",
            ),
            (
                Observed {
                    min_tx_rate_mbps: 10,
                    ..good.clone()
                },
                "container c1's eth0's min rate is 10 Mbit/s, not 0 (0 is no limit)",
            ),
        ];
        for (seen, want) in cases {
            assert_eq!(check(&e, &seen).unwrap_err().to_string(), want);
        }
        let reserved = Entry {
            phase: Phase::Reserved,
            ..e
        };
        assert_eq!(
            check(&reserved, &good).unwrap_err().to_string(),
            "container c1's eth0 is not attached yet: its ADD did not finish"
        );
    }

    #[test]
    fn the_book_file_is_versioned_json() {
        let pools = pools();
        let (book, _) = Book::default()
            .add(&pools, &req("c1", pool("b"), 1))
            .unwrap();
        let (book, _) = book
            .add(&pools, &req("c2", Target::Switch("s".into()), 2))
            .unwrap();
        let book = book
            .note_host(
                &key("c1"),
                HostLink {
                    name: "enp2s0v1".into(),
                    mac: mac(0x42),
                },
            )
            .unwrap();
        let text = book.to_json();
        assert_eq!(Book::from_json(&text).unwrap(), book);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(
            v["attachments"][0],
            serde_json::json!({
                "container_id": "c1", "ifname": "eth0", "network": "net-b",
                "netns": "/var/run/netns/c1", "target": {"pool": "b"},
                "alloc": {"kind": "vf", "pool": "b", "pf": PF_B, "vf": 1},
                "mac": "02:00:00:00:00:01",
                "asked": {"vlan": null, "qos": null, "max_tx_rate_mbps": null, "min_tx_rate_mbps": null, "spoofchk": null, "trust": null, "mtu": null},
                "attrs": {"vlan": null, "qos": null, "max_tx_rate_mbps": null, "min_tx_rate_mbps": null, "spoofchk": null, "trust": null, "mtu": null},
                "phase": "reserved",
                "host": {"name": "enp2s0v1", "mac": "02:00:00:00:00:42"}
            })
        );
        assert_eq!(
            v["attachments"][1]["alloc"],
            serde_json::json!({"kind": "soft_port", "switch": "s", "host_end": host_end_name(&key("c2"))})
        );
        let newer = text.replacen("\"version\": 1", "\"version\": 2", 1);
        assert_eq!(
            Book::from_json(&newer).unwrap_err().to_string(),
            "the attachment book is version 2, written by a newer vportd; this one reads version 1 and older"
        );
        assert!(matches!(
            Book::from_json("{\"version\": 1}"),
            Err(BookError::Unreadable { .. })
        ));
    }

    /// A host as the steps see it: where each VF's netdev is and what its PF set on it,
    /// the veths and the switch ports.
    #[derive(Debug, Default)]
    struct Host {
        vfs: BTreeMap<(String, u32), SimVf>,
        veths: BTreeMap<String, PathBuf>,
        ports: BTreeSet<String>,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct SimVf {
        netns: Option<PathBuf>,
        name: String,
        mac: Mac,
        admin: Option<(Mac, VfAttributes)>,
    }

    impl Host {
        fn new(pools: &[Pool]) -> Host {
            let mut h = Host::default();
            for (p, pool) in pools.iter().enumerate() {
                for vf in &pool.vfs {
                    h.vfs.insert((pool.pf.clone(), *vf), Host::home(p, *vf));
                }
            }
            h
        }

        fn home(p: usize, vf: u32) -> SimVf {
            SimVf {
                netns: None,
                name: format!("pf{p}v{vf}"),
                mac: Mac([0x0e, 0, 0, 0, p as u8, vf as u8]),
                admin: None,
            }
        }

        fn apply(&mut self, step: &Step) {
            match step {
                Step::ConfigureVf { pf, vf, mac, attrs } => {
                    let v = self.vfs.get_mut(&(pf.clone(), *vf)).unwrap();
                    v.admin = Some((*mac, *attrs));
                    v.mac = *mac;
                }
                Step::MoveVfIn {
                    pf,
                    vf,
                    netns,
                    ifname,
                    ..
                } => {
                    let v = self.vfs.get_mut(&(pf.clone(), *vf)).unwrap();
                    v.netns = Some(netns.clone());
                    v.name = ifname.clone();
                }
                Step::CleanVf { pf, vf } => {
                    self.vfs.get_mut(&(pf.clone(), *vf)).unwrap().admin = None;
                }
                Step::MoveVfBack { pf, vf, host, .. } => {
                    let v = self.vfs.get_mut(&(pf.clone(), *vf)).unwrap();
                    match host {
                        Some(h) => {
                            v.netns = None;
                            v.name = h.name.clone();
                            v.mac = h.mac;
                        }
                        None => assert_eq!(v.netns, None, "a VF moved with no name noted"),
                    }
                }
                Step::CreateVeth {
                    netns, host_end, ..
                } => {
                    self.veths.insert(host_end.clone(), netns.clone());
                }
                Step::AddSwitchPort { host_end, .. } => {
                    self.ports.insert(host_end.clone());
                }
                Step::RemoveSwitchPort { host_end, .. } => {
                    self.ports.remove(host_end);
                }
                Step::DeleteVeth { host_end, .. } => {
                    self.veths.remove(host_end);
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// An ADD whose daemon dies after `done` steps (all done: attached).
        Add {
            c: usize,
            target: usize,
            mac: u8,
            done: usize,
        },
        /// A DEL whose daemon dies after `done` steps (the book not written then).
        Del { c: usize, done: usize },
        /// A GC of one network keeping the attachments in `keep` (a bit per key), whose
        /// daemon dies after `done` steps.
        Gc {
            target: usize,
            keep: u8,
            done: usize,
        },
    }

    const TARGETS: [&str; 3] = ["a", "b", "s"];

    fn target(t: usize) -> Target {
        if TARGETS[t] == "s" {
            Target::Switch("s".into())
        } else {
            Target::Pool(TARGETS[t].into())
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..6usize, 0..3usize, 0..5u8, 0..4usize)
                .prop_map(|(c, target, mac, done)| Op::Add { c, target, mac, done }),
            2 => (0..6usize, 0..4usize).prop_map(|(c, done)| Op::Del { c, done }),
            1 => (0..3usize, any::<u8>(), 0..8usize)
                .prop_map(|(target, keep, done)| Op::Gc { target, keep, done }),
        ]
    }

    fn name(c: usize) -> String {
        format!("c{c}")
    }

    /// The daemon's part of an ADD: the book written, the host noted, `done` steps run,
    /// and the book marked attached when all of them ran.
    fn run_add(book: Book, host: &mut Host, req: &Request, done: usize) -> Book {
        let Ok((mut book, steps)) = book.add(&pools(), req) else {
            return book;
        };
        let e = book.get(&req.key).unwrap().clone();
        if let (Allocation::Vf { pf, vf, .. }, None) = (&e.alloc, &e.host) {
            let v = &host.vfs[&(pf.clone(), *vf)];
            let noted = HostLink {
                name: v.name.clone(),
                mac: v.mac,
            };
            book = book.note_host(&req.key, noted).unwrap();
        }
        for s in steps.iter().take(done) {
            host.apply(s);
        }
        if done >= steps.len() {
            book = book.attached(&req.key, Attached::default()).unwrap();
        }
        book
    }

    /// Releases, each forgotten once its steps ran; the daemon dies after `done` steps.
    fn run_releases(mut book: Book, host: &mut Host, releases: &[Release], done: usize) -> Book {
        let mut left = done;
        for r in releases {
            for s in &r.steps {
                if left == 0 {
                    return book;
                }
                host.apply(s);
                left -= 1;
            }
            book = book.forget(&r.key);
        }
        book
    }

    fn invariants(book: &Book, host: &Host) -> Result<(), TestCaseError> {
        let mut vfs = BTreeSet::new();
        let mut macs = BTreeSet::new();
        for e in book.entries() {
            if let Some((pf, vf)) = e.vf() {
                prop_assert!(vfs.insert((pf.to_string(), vf)), "VF {pf}/{vf} given twice");
            }
            prop_assert!(macs.insert(e.mac), "MAC {} given twice", e.mac);
        }
        // A VF the book does not hold is home and clean: free means really free.
        for (at, v) in &host.vfs {
            if !vfs.contains(at) {
                prop_assert_eq!(&v.netns, &None, "free VF {:?} is in a namespace", at);
                prop_assert_eq!(&v.admin, &None, "free VF {:?} keeps its config", at);
            }
        }
        // An attached entry is what it says, wherever a retried ADD resumed it.
        for e in book.entries().filter(|e| e.phase == Phase::Attached) {
            match &e.alloc {
                Allocation::Vf { pf, vf, .. } => {
                    let v = &host.vfs[&(pf.clone(), *vf)];
                    prop_assert_eq!(v.netns.as_ref(), Some(&e.netns), "{} is not inside", e.key);
                    prop_assert_eq!((&v.name, v.mac), (&e.key.ifname, e.mac));
                    prop_assert_eq!(v.admin, Some((e.mac, e.attrs)));
                }
                Allocation::SoftPort { host_end, .. } => {
                    prop_assert_eq!(host.veths.get(host_end), Some(&e.netns));
                    prop_assert!(host.ports.contains(host_end));
                }
            }
        }
        for end in host.veths.keys().chain(host.ports.iter()) {
            prop_assert!(
                book.entries().any(
                    |e| matches!(&e.alloc, Allocation::SoftPort { host_end, .. } if host_end == end)
                ),
                "veth or port {} belongs to no attachment",
                end
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any interleaving of ADD, DEL and GC, each possibly cut short by a crash, never
        /// gives one VF or one MAC to two keys nor leaves a free VF out of the host; DEL of
        /// every key, or GC of every network, afterwards leaves nothing and every VF home.
        #[test]
        fn no_vf_or_mac_twice_and_a_replay_frees_everything(
            ops in prop::collection::vec(op(), 1..40),
            finish_with_gc in any::<bool>(),
        ) {
            let pools = pools();
            let mut host = Host::new(&pools);
            let mut book = Book::default();
            for op in &ops {
                match *op {
                    Op::Add { c, target: t, mac: m, done } => {
                        let mut r = req(&name(c), target(t), m);
                        r.network = format!("net-{}", TARGETS[t]);
                        book = run_add(book, &mut host, &r, done);
                    }
                    Op::Del { c, done } => {
                        let (during, steps) = book.del(&key(&name(c)));
                        let release = Release { key: key(&name(c)), steps };
                        book = run_releases(during, &mut host, &[release], done);
                    }
                    Op::Gc { target: t, keep, done } => {
                        let valid: Vec<Key> =
                            (0..6).filter(|c| keep & (1 << c) != 0).map(|c| key(&name(c))).collect();
                        let (during, releases) = book.gc(&format!("net-{}", TARGETS[t]), &valid);
                        book = run_releases(during, &mut host, &releases, done);
                    }
                }
                invariants(&book, &host)?;
                let text = book.to_json();
                prop_assert_eq!(&Book::from_json(&text).unwrap(), &book);
            }
            if finish_with_gc {
                for t in TARGETS {
                    let (during, releases) = book.gc(&format!("net-{t}"), &[]);
                    book = run_releases(during, &mut host, &releases, usize::MAX);
                }
            } else {
                for c in 0..6 {
                    let (during, steps) = book.del(&key(&name(c)));
                    let release = Release { key: key(&name(c)), steps };
                    book = run_releases(during, &mut host, &[release], usize::MAX);
                }
            }
            prop_assert_eq!(book.entries().count(), 0);
            for p in &pools {
                prop_assert_eq!(book.capacity(p).free, p.vfs.len());
            }
            for (p, pool) in pools.iter().enumerate() {
                for vf in &pool.vfs {
                    prop_assert_eq!(&host.vfs[&(pool.pf.clone(), *vf)], &Host::home(p, *vf));
                }
            }
            prop_assert!(host.veths.is_empty() && host.ports.is_empty());
        }
    }
}

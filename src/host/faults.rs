//! Fault injection for tests (built only with the `fault-injection` feature, which
//! `cargo test` turns on and release builds never have): [`FaultyOps`] wraps any
//! [`SriovOps`], the live kernel's as well as the simulator's, and makes the Nth call of
//! a chosen operation fail with a chosen errno, time out, or kill the process, returning
//! exactly the error type the live code returns for that errno. Apply's promises (a
//! failure rolls back, kill -9 then rerun converges, nothing leaks) are then tested on
//! the real igb driver at points where the real kernel rarely fails on its own.
//!
//! A test selects faults with a spec, the same in the simulator and in `VPORTD_FAULTS`
//! for `vportd apply` in the guest: comma-separated `OP@N[*K|*]=WHAT[:before|:after]`.
//! - OP: an operation (`set_vf`, `set_num_vfs`, `bind`, ... see [`FaultOp`]), or `write`,
//!   which counts every host write (VF count, bind, VF attributes, channels, RSS table).
//! - N: the call of that operation, from 1; `*K` fails K calls in a row, `*` every call
//!   from the Nth on (a device gone bad).
//! - WHAT: an errno name (`EBUSY`, `EIO`, ...), `timeout` (only where the live code has a
//!   time bound), or `kill` (SIGKILL to the process itself: kill -9 at an exact point).
//! - `:before` (the default for errnos): the operation does not happen; `:after` (the
//!   default for timeouts): it happens, then the failure is reported, as when the kernel
//!   carried a write out but its answer came too late.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::errno::Errno;

use crate::model::file_errors::{FsError, WriteFailed};
use crate::model::queues::{FlowRule, QueueFacts};
use crate::model::vf::VfConfig;
use crate::provision::ops::{EthtoolError, HostError, QueueOps, SriovOps};

/// The environment variable `vportd apply` reads its fault spec from (fault-injection
/// builds only).
pub const ENV: &str = "VPORTD_FAULTS";

/// An operation apply performs on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultOp {
    NumVfs,
    SetNumVfs,
    VfBdf,
    Driver,
    Bind,
    VfConfig,
    SetVf,
    PfCarrier,
    QueueFacts,
    SetChannels,
    SetRssTable,
    RssContext,
    CreateRssContext,
    DeleteRssContext,
    Rule,
    InsertRule,
    DeleteRule,
    SetFeature,
    CreateMacvlan,
    FindMacvlan,
    DeleteLink,
    /// Any host write (a pseudo-operation with its own counter).
    Write,
}

impl FaultOp {
    /// Every real operation (not [`FaultOp::Write`]).
    pub const ALL: [FaultOp; 21] = [
        FaultOp::NumVfs,
        FaultOp::SetNumVfs,
        FaultOp::VfBdf,
        FaultOp::Driver,
        FaultOp::Bind,
        FaultOp::VfConfig,
        FaultOp::SetVf,
        FaultOp::PfCarrier,
        FaultOp::QueueFacts,
        FaultOp::SetChannels,
        FaultOp::SetRssTable,
        FaultOp::RssContext,
        FaultOp::CreateRssContext,
        FaultOp::DeleteRssContext,
        FaultOp::Rule,
        FaultOp::InsertRule,
        FaultOp::DeleteRule,
        FaultOp::SetFeature,
        FaultOp::CreateMacvlan,
        FaultOp::FindMacvlan,
        FaultOp::DeleteLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultOp::NumVfs => "num_vfs",
            FaultOp::SetNumVfs => "set_num_vfs",
            FaultOp::VfBdf => "vf_bdf",
            FaultOp::Driver => "driver",
            FaultOp::Bind => "bind",
            FaultOp::VfConfig => "vf_config",
            FaultOp::SetVf => "set_vf",
            FaultOp::PfCarrier => "pf_carrier",
            FaultOp::QueueFacts => "queue_facts",
            FaultOp::SetChannels => "set_channels",
            FaultOp::SetRssTable => "set_rss_table",
            FaultOp::RssContext => "rss_context",
            FaultOp::CreateRssContext => "create_rss_context",
            FaultOp::DeleteRssContext => "delete_rss_context",
            FaultOp::Rule => "rule",
            FaultOp::InsertRule => "insert_rule",
            FaultOp::DeleteRule => "delete_rule",
            FaultOp::SetFeature => "set_feature",
            FaultOp::CreateMacvlan => "create_macvlan",
            FaultOp::FindMacvlan => "find_macvlan",
            FaultOp::DeleteLink => "delete_link",
            FaultOp::Write => "write",
        }
    }

    fn from_name(s: &str) -> Option<FaultOp> {
        FaultOp::ALL
            .into_iter()
            .chain([FaultOp::Write])
            .find(|op| op.name() == s)
    }

    /// Whether the live code bounds this operation in time (so that `timeout` is a
    /// failure it can really report).
    pub fn can_time_out(self) -> bool {
        matches!(
            self,
            FaultOp::SetNumVfs | FaultOp::VfConfig | FaultOp::SetVf | FaultOp::Write
        )
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            FaultOp::SetNumVfs
                | FaultOp::Bind
                | FaultOp::SetVf
                | FaultOp::SetChannels
                | FaultOp::SetRssTable
                | FaultOp::CreateRssContext
                | FaultOp::DeleteRssContext
                | FaultOp::InsertRule
                | FaultOp::DeleteRule
                | FaultOp::SetFeature
                | FaultOp::CreateMacvlan
                | FaultOp::DeleteLink
        )
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Errno(Errno),
    Timeout,
    Kill,
}

/// One fault: calls `nth .. nth + times` of `op` fail (`times` None: every call from `nth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: FaultOp,
    pub nth: u32,
    pub times: Option<u32>,
    pub failure: Failure,
    /// The operation is carried out before the failure is reported.
    pub after: bool,
}

impl Fault {
    /// One call, failing before it happens with `errno`.
    pub fn errno(op: FaultOp, nth: u32, errno: Errno) -> Fault {
        Fault {
            op,
            nth,
            times: Some(1),
            failure: Failure::Errno(errno),
            after: false,
        }
    }

    fn hits(&self, n: u32) -> bool {
        n >= self.nth && self.times.is_none_or(|t| n < self.nth.saturating_add(t))
    }
}

/// The panic payload of a [`Failure::Kill`] in [`KillMode::Panic`]: the process "died" there.
#[derive(Debug)]
pub struct Killed;

/// How a [`Failure::Kill`] ends the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMode {
    /// SIGKILL to this process: the real kill -9 (the CLI in the guest).
    Sigkill,
    /// `panic_any(Killed)`: unwinds out of apply without running any of its error paths,
    /// leaving the journal and the host as a killed process would (in-process tests).
    Panic,
}

/// A fault spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultSpecError {
    #[error(
        "fault {spec:?}: {why} (expected OP@N[*K|*]=ERRNO|timeout|kill[:before|:after], e.g. set_vf@3=EBUSY)"
    )]
    Bad { spec: String, why: String },
}

fn errno_by_name(s: &str) -> Option<Errno> {
    const KNOWN: [Errno; 16] = [
        Errno::EBUSY,
        Errno::EAGAIN,
        Errno::EOPNOTSUPP,
        Errno::ENOENT,
        Errno::ERANGE,
        Errno::ENOSPC,
        Errno::EPERM,
        Errno::EIO,
        Errno::EINVAL,
        Errno::ENODEV,
        Errno::ENOMEM,
        Errno::ENXIO,
        Errno::EEXIST,
        Errno::EACCES,
        Errno::EPROTONOSUPPORT,
        Errno::ETIMEDOUT,
    ];
    KNOWN.into_iter().find(|e| format!("{e:?}") == s)
}

/// Parses a spec (see the module documentation); an empty spec injects nothing.
pub fn parse_spec(spec: &str) -> Result<Vec<Fault>, FaultSpecError> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| FaultSpecError::Bad {
            spec: item.to_string(),
            why: why.to_string(),
        };
        let (target, what) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (op, pos) = target.split_once('@').ok_or_else(|| bad("no '@N'"))?;
        let op = FaultOp::from_name(op.trim()).ok_or_else(|| {
            bad(&format!(
                "unknown operation {op:?}; known: {}, write",
                FaultOp::ALL.map(FaultOp::name).join(", ")
            ))
        })?;
        let (nth, times) = match pos.split_once('*') {
            None => (pos, Some(1)),
            Some((n, "")) => (n, None),
            Some((n, k)) => (
                n,
                Some(
                    k.parse::<u32>()
                        .ok()
                        .filter(|k| *k > 0)
                        .ok_or_else(|| bad("*K needs a count of at least 1"))?,
                ),
            ),
        };
        let nth = nth
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("N counts calls from 1"))?;
        let (what, when) = match what.split_once(':') {
            None => (what, None),
            Some((w, "before")) => (w, Some(false)),
            Some((w, "after")) => (w, Some(true)),
            Some(_) => return Err(bad("the suffix is :before or :after")),
        };
        let failure = match what {
            "timeout" => Failure::Timeout,
            "kill" => Failure::Kill,
            e => Failure::Errno(errno_by_name(e).ok_or_else(|| bad("unknown errno"))?),
        };
        if failure == Failure::Timeout && !op.can_time_out() {
            return Err(bad(&format!(
                "{} has no time bound in the live code, so it cannot time out",
                op.name()
            )));
        }
        out.push(Fault {
            op,
            nth,
            times,
            failure,
            after: when.unwrap_or(failure == Failure::Timeout),
        });
    }
    Ok(out)
}

/// The arguments of one call, enough to build the error the live code would return.
enum Call<'a> {
    Pf(&'a str),
    SetNumVfs(&'a str, u32),
    VfBdf(&'a str, u32),
    Bdf(&'a str),
    Bind(&'a str, Option<&'a str>),
    Link(u32),
    SetVf(u32, u32),
    Queue(u32, &'static str),
}

fn pci(bdf: &str) -> String {
    format!("/sys/bus/pci/devices/{bdf}")
}

fn read_failed(path: String, errno: Errno) -> HostError {
    HostError::Fs(FsError::Read {
        path,
        source: std::io::Error::from_raw_os_error(errno as i32),
    })
}

/// The error the live code returns when the kernel answers `errno` to this call.
fn host_error(call: &Call, failure: Failure, waited: Duration) -> HostError {
    let errno = match failure {
        Failure::Errno(e) => e,
        _ => Errno::ETIMEDOUT,
    };
    let netlink = |what: String| match failure {
        Failure::Timeout => HostError::Timeout { what, waited },
        _ => HostError::Netlink {
            what,
            errno: Some(errno),
            message: format!("{} ({errno})", errno.desc()),
        },
    };
    match call {
        Call::Pf(pf) => read_failed(format!("{}/sriov_numvfs", pci(pf)), errno),
        Call::SetNumVfs(pf, n) => match failure {
            Failure::Timeout => HostError::Timeout {
                what: format!("{n} VFs on {pf} becoming ready"),
                waited,
            },
            _ => HostError::Write(WriteFailed {
                path: format!("{}/sriov_numvfs", pci(pf)),
                value: n.to_string(),
                errno,
                device: Default::default(),
            }),
        },
        Call::VfBdf(pf, i) => read_failed(format!("{}/virtfn{i}", pci(pf)), errno),
        Call::Bdf(bdf) => read_failed(format!("{}/driver", pci(bdf)), errno),
        Call::Bind(bdf, driver) => HostError::Write(WriteFailed {
            path: match driver {
                Some(_) => "/sys/bus/pci/drivers_probe".into(),
                None => format!("{}/driver_override", pci(bdf)),
            },
            value: driver.map_or("\n".into(), |_| bdf.to_string()),
            errno,
            device: Default::default(),
        }),
        Call::Link(ifindex) => netlink(format!("reading link {ifindex} over rtnetlink")),
        Call::SetVf(ifindex, vf) => netlink(format!("setting VF {vf} on link {ifindex}")),
        Call::Queue(..) => unreachable!("queue calls fail with an EthtoolError"),
    }
}

/// Any [`SriovOps`] with faults injected at chosen calls.
pub struct FaultyOps<O> {
    pub inner: O,
    pub faults: Vec<Fault>,
    /// Calls so far per operation (and of `write`), to aim faults.
    pub calls: BTreeMap<FaultOp, u32>,
    /// Every fault that struck, as "set_vf#3 EBUSY", in order.
    pub hits: Vec<String>,
    pub kill: KillMode,
    /// Print each fault as it strikes to stderr (the CLI in the guest).
    pub announce: bool,
    /// The time an injected timeout says it waited.
    pub waited: Duration,
}

impl<O: SriovOps> FaultyOps<O> {
    pub fn new(inner: O, faults: Vec<Fault>) -> Self {
        Self {
            inner,
            faults,
            calls: BTreeMap::new(),
            hits: Vec::new(),
            kill: KillMode::Panic,
            announce: false,
            waited: Duration::from_secs(30),
        }
    }

    /// Counts a call and returns the fault that strikes it, if any.
    fn strike(&mut self, op: FaultOp) -> Option<Fault> {
        let mut count = |o: FaultOp| {
            let c = self.calls.entry(o).or_insert(0);
            *c += 1;
            *c
        };
        let n = count(op);
        let w = op.is_write().then(|| count(FaultOp::Write));
        let fault = self
            .faults
            .iter()
            .find(|f| {
                (f.op == op && f.hits(n))
                    || (f.op == FaultOp::Write && w.is_some_and(|w| f.hits(w)))
            })
            .cloned()?;
        let what = match fault.failure {
            Failure::Errno(e) => format!("{e}"),
            Failure::Timeout => "timeout".into(),
            Failure::Kill => "kill".into(),
        };
        let hit = format!(
            "{}#{n} {what}{}",
            op.name(),
            if fault.after { " after" } else { "" }
        );
        if self.announce {
            eprintln!("vportd: injected fault: {hit}");
        }
        self.hits.push(hit);
        Some(fault)
    }

    fn die(&self) -> ! {
        match self.kill {
            KillMode::Sigkill => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                // SIGKILL cannot be caught or ignored; nothing runs after it.
                std::process::abort()
            }
            KillMode::Panic => std::panic::panic_any(Killed),
        }
    }

    /// Runs `f` (the real operation) unless a fault strikes before it, and reports a fault
    /// that strikes after it.
    fn host<T>(
        &mut self,
        op: FaultOp,
        call: Call,
        f: impl FnOnce(&mut O) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let Some(fault) = self.strike(op) else {
            return f(&mut self.inner);
        };
        if fault.after {
            f(&mut self.inner)?;
        }
        match fault.failure {
            Failure::Kill => self.die(),
            failure => Err(host_error(&call, failure, self.waited)),
        }
    }

    fn queue<T>(
        &mut self,
        op: FaultOp,
        call: Call,
        f: impl FnOnce(&mut dyn QueueOps) -> Result<T, EthtoolError>,
    ) -> Result<T, EthtoolError> {
        let Call::Queue(ifindex, what) = call else {
            unreachable!("queue operations are described by Call::Queue")
        };
        let refused = |errno| EthtoolError::Refused {
            dev: format!("ifindex {ifindex}"),
            what: what.to_string(),
            errno,
        };
        let fault = self.strike(op);
        let run = |s: &mut Self| match s.inner.queues() {
            Some(q) => f(q),
            None => Err(refused(Errno::EOPNOTSUPP)),
        };
        let Some(fault) = fault else {
            return run(self);
        };
        if fault.after {
            run(self)?;
        }
        match fault.failure {
            Failure::Errno(e) => Err(refused(e)),
            // Rejected by parse_spec; a hand-built fault gets the nearest real error.
            Failure::Timeout => Err(refused(Errno::ETIMEDOUT)),
            Failure::Kill => self.die(),
        }
    }
}

/// Builds the layer from `VPORTD_FAULTS`, announcing faults and killing for real; `None`
/// when the variable is unset or empty.
pub fn from_env<O: SriovOps>(inner: O) -> Result<Result<FaultyOps<O>, O>, FaultSpecError> {
    let spec = std::env::var(ENV).unwrap_or_default();
    let faults = parse_spec(&spec)?;
    if faults.is_empty() {
        return Ok(Err(inner));
    }
    let mut ops = FaultyOps::new(inner, faults);
    ops.kill = KillMode::Sigkill;
    ops.announce = true;
    Ok(Ok(ops))
}

impl<O: SriovOps> SriovOps for FaultyOps<O> {
    fn num_vfs(&mut self, pf: &str) -> Result<u32, HostError> {
        self.host(FaultOp::NumVfs, Call::Pf(pf), |o| o.num_vfs(pf))
    }

    fn set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError> {
        self.host(FaultOp::SetNumVfs, Call::SetNumVfs(pf, n), |o| {
            o.set_num_vfs(pf, n)
        })
    }

    fn vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError> {
        self.host(FaultOp::VfBdf, Call::VfBdf(pf, index), |o| {
            o.vf_bdf(pf, index)
        })
    }

    fn driver(&mut self, bdf: &str) -> Result<Option<String>, HostError> {
        self.host(FaultOp::Driver, Call::Bdf(bdf), |o| o.driver(bdf))
    }

    fn bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError> {
        self.host(FaultOp::Bind, Call::Bind(bdf, driver), |o| {
            o.bind(bdf, driver)
        })
    }

    fn vf_config(&mut self, pf_ifindex: u32, vf: u32) -> Result<Option<VfConfig>, HostError> {
        self.host(FaultOp::VfConfig, Call::Link(pf_ifindex), |o| {
            o.vf_config(pf_ifindex, vf)
        })
    }

    fn set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError> {
        self.host(FaultOp::SetVf, Call::SetVf(pf_ifindex, cfg.vf), |o| {
            o.set_vf(pf_ifindex, cfg)
        })
    }

    fn pf_carrier(&mut self, pf: &str) -> Result<bool, HostError> {
        let net = format!("{}/net", pci(pf));
        match self.host(FaultOp::PfCarrier, Call::Bdf(pf), |o| o.pf_carrier(pf)) {
            // The live code lists the PF's net directory: a failure is a list error.
            Err(HostError::Fs(FsError::Read { source, .. })) => {
                Err(HostError::Fs(FsError::List { path: net, source }))
            }
            other => other,
        }
    }

    // The PF's link is passed through: no fault is injected into it (the faults' table
    // names the operations of VF and queue steps).
    fn pf_admin_up(&mut self, pf_ifindex: u32) -> Result<bool, HostError> {
        self.inner.pf_admin_up(pf_ifindex)
    }

    fn set_pf_admin_up(&mut self, pf_ifindex: u32, up: bool) -> Result<(), HostError> {
        self.inner.set_pf_admin_up(pf_ifindex, up)
    }

    fn queues(&mut self) -> Option<&mut dyn QueueOps> {
        if self.inner.queues().is_some() {
            Some(self)
        } else {
            None
        }
    }
}

impl<O: SriovOps> QueueOps for FaultyOps<O> {
    fn facts(&mut self, ifindex: u32) -> Result<QueueFacts, EthtoolError> {
        self.queue(
            FaultOp::QueueFacts,
            Call::Queue(ifindex, "read its channels and RSS table"),
            |q| q.facts(ifindex),
        )
    }

    fn set_channels(&mut self, ifindex: u32, combined: u32) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::SetChannels,
            Call::Queue(ifindex, "set its combined channels"),
            |q| q.set_channels(ifindex, combined),
        )
    }

    fn set_rss_table(&mut self, ifindex: u32, indir: &[u32]) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::SetRssTable,
            Call::Queue(ifindex, "set its RSS indirection table"),
            |q| q.set_rss_table(ifindex, indir),
        )
    }

    // Steering operations (issue 9).
    fn rss_context(&mut self, ifindex: u32, id: u32) -> Result<Option<Vec<u32>>, EthtoolError> {
        self.queue(
            FaultOp::RssContext,
            Call::Queue(ifindex, "read an RSS context"),
            |q| q.rss_context(ifindex, id),
        )
    }

    fn create_rss_context(&mut self, ifindex: u32, indir: &[u32]) -> Result<u32, EthtoolError> {
        self.queue(
            FaultOp::CreateRssContext,
            Call::Queue(ifindex, "create an RSS context"),
            |q| q.create_rss_context(ifindex, indir),
        )
    }

    fn delete_rss_context(&mut self, ifindex: u32, id: u32) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::DeleteRssContext,
            Call::Queue(ifindex, "delete an RSS context"),
            |q| q.delete_rss_context(ifindex, id),
        )
    }

    fn rule(&mut self, ifindex: u32, location: u32) -> Result<Option<FlowRule>, EthtoolError> {
        self.queue(
            FaultOp::Rule,
            Call::Queue(ifindex, "read an ntuple rule"),
            |q| q.rule(ifindex, location),
        )
    }

    fn insert_rule(&mut self, ifindex: u32, rule: &FlowRule) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::InsertRule,
            Call::Queue(ifindex, "insert an ntuple rule"),
            |q| q.insert_rule(ifindex, rule),
        )
    }

    fn delete_rule(&mut self, ifindex: u32, location: u32) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::DeleteRule,
            Call::Queue(ifindex, "delete an ntuple rule"),
            |q| q.delete_rule(ifindex, location),
        )
    }

    fn set_feature(&mut self, ifindex: u32, name: &str, on: bool) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::SetFeature,
            Call::Queue(ifindex, "set a feature"),
            |q| q.set_feature(ifindex, name, on),
        )
    }

    fn create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, EthtoolError> {
        self.queue(
            FaultOp::CreateMacvlan,
            Call::Queue(parent, "create a macvlan"),
            |q| q.create_macvlan(parent, name, mac),
        )
    }

    fn find_macvlan(&mut self, parent: u32, mac: [u8; 6]) -> Result<Option<u32>, EthtoolError> {
        self.queue(
            FaultOp::FindMacvlan,
            Call::Queue(parent, "list its macvlans"),
            |q| q.find_macvlan(parent, mac),
        )
    }

    fn delete_link(&mut self, ifindex: u32) -> Result<(), EthtoolError> {
        self.queue(
            FaultOp::DeleteLink,
            Call::Queue(ifindex, "delete the link"),
            |q| q.delete_link(ifindex),
        )
    }
    // End of steering operations.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_counts_and_placement() {
        let f =
            parse_spec("set_vf@3=EBUSY, set_num_vfs@1=timeout,bind@2*3=EIO:after,write@4*=kill")
                .unwrap();
        assert_eq!(f[0], Fault::errno(FaultOp::SetVf, 3, Errno::EBUSY));
        assert_eq!(
            (f[1].failure, f[1].after, f[1].times),
            (Failure::Timeout, true, Some(1))
        );
        assert_eq!((f[2].times, f[2].after), (Some(3), true));
        assert_eq!(
            (f[3].op, f[3].times, f[3].failure),
            (FaultOp::Write, None, Failure::Kill)
        );
        assert!(parse_spec("").unwrap().is_empty());
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, why) in [
            ("set_vf=EBUSY", "no '@N'"),
            ("set_vf@0=EBUSY", "from 1"),
            ("frob@1=EIO", "unknown operation"),
            ("set_vf@1=EWHAT", "unknown errno"),
            ("bind@1=timeout", "cannot time out"),
            ("set_vf@1*0=EIO", "at least 1"),
            ("set_vf@1=EIO:later", ":before or :after"),
        ] {
            let e = parse_spec(spec).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(spec), "{spec}: {e}");
        }
    }

    #[test]
    fn errors_have_the_live_types_and_transience() {
        let call = Call::SetNumVfs("0000:01:00.0", 3);
        let e = host_error(&call, Failure::Errno(Errno::EBUSY), Duration::ZERO);
        assert!(matches!(e, HostError::Write(ref w) if w.path.ends_with("sriov_numvfs")));
        assert!(e.is_transient());
        assert!(e.to_string().contains("VFs already exist"), "{e}");
        let e = host_error(
            &Call::SetVf(10, 2),
            Failure::Errno(Errno::EAGAIN),
            Duration::ZERO,
        );
        assert!(matches!(e, HostError::Netlink { .. }) && e.is_transient());
        let e = host_error(
            &Call::Bdf("0000:01:10.0"),
            Failure::Errno(Errno::EIO),
            Duration::ZERO,
        );
        assert_eq!(e.errno(), Some(Errno::EIO));
        assert!(matches!(
            host_error(&call, Failure::Timeout, Duration::ZERO),
            HostError::Timeout { .. }
        ));
    }
}

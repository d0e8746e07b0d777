//! Reconcile after a device event: make the host match the stored config for the uplinks
//! that are here now, and record the vPorts whose uplink is gone as lost.
//!
//! Every reconcile re-reads the config and the whole host and runs the ordinary apply over
//! the uplinks present: apply is idempotent and a no-op apply costs a discovery, so there is
//! no per-device special case to get wrong, and a burst of events (a hot-added NIC sends
//! pci add, bind, net add, then one add per VF) collapses into one run.
//!
//! An uplink counts as present when its PCI function is there *with a netdev*: between the
//! pci `add` and the driver's `bind` the function exists but cannot be configured, and its
//! VFs are gone while no driver holds it. vPorts of an absent uplink keep their allocation in
//! the state file with health `lost`, so that they get the same VF index back when it
//! returns; vPorts never provisioned on an absent uplink are reported as waiting.

use serde::Serialize;

use crate::model::inventory::Inventory;
use crate::model::profile::ProfileSet;
use crate::model::uplink::UplinkSelector;
use crate::provision::apply::{self, ApplyOptions, ApplyReport};
use crate::provision::config::Config;
use crate::provision::ops::SriovOps;
use crate::provision::plan::{Plan, PlanOptions};
use crate::provision::state::{Health, State, StateError};
use crate::provision::{self, ProvisionError};

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Config, plan or apply failed; the vPorts of absent uplinks were still marked lost.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The state file could not be updated.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a reconcile did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The uplinks of the config that are not here (or have no driver), as the config names them.
    pub absent_uplinks: Vec<String>,
    /// vPorts whose uplink is gone: their allocation is kept, health `lost`.
    pub lost: Vec<String>,
    /// vPorts that were lost and are provisioned again.
    pub restored: Vec<String>,
    /// vPorts of absent uplinks that were never provisioned.
    pub waiting: Vec<String>,
    pub plan: Plan,
    pub report: ApplyReport,
}

/// Whether each of the config's uplinks is here and ready (has a netdev), by index.
pub fn ready_uplinks(config: &Config, inv: &Inventory) -> Vec<bool> {
    config
        .uplinks
        .iter()
        .map(|u| {
            inv.pci_functions.iter().any(|f| {
                !f.netdevs.is_empty()
                    && match &u.selector {
                        UplinkSelector::Pci(bdf) => f.bdf.eq_ignore_ascii_case(bdf),
                        UplinkSelector::Mac(_) => f
                            .netdevs
                            .iter()
                            .any(|d| d.mac.as_deref().is_some_and(|m| u.selector.matches(m))),
                        UplinkSelector::Ifname(name) => f.netdevs.iter().any(|d| d.name == *name),
                    }
            })
        })
        .collect()
}

/// The config cut down to the ready uplinks and their vPorts, and the indexes of the others.
pub fn split(config: &Config, ready: &[bool]) -> (Config, Vec<usize>) {
    let absent: Vec<usize> = (0..config.uplinks.len()).filter(|i| !ready[*i]).collect();
    let mut sub = config.clone();
    sub.uplinks = config
        .uplinks
        .iter()
        .enumerate()
        .filter(|(i, _)| ready[*i])
        .map(|(_, u)| u.clone())
        .collect();
    sub.vports.retain(|v| {
        // A `[[switch]]` member depends on no uplink.
        v.switch.is_some()
            || config
                .uplinks
                .iter()
                .position(|u| u.selector.matches(&v.uplink))
                .is_some_and(|i| ready[i])
    });
    (sub, absent)
}

/// Puts back into `after` (the state the apply wrote) the vPorts of absent uplinks that
/// `before` held, with health `lost`. Returns (lost, waiting).
pub fn mark_lost(
    config: &Config,
    absent: &[usize],
    before: &State,
    after: &mut State,
) -> (Vec<String>, Vec<String>) {
    let (mut lost, mut waiting) = (Vec::new(), Vec::new());
    for v in &config.vports {
        let Some(i) = config
            .uplinks
            .iter()
            .position(|u| u.selector.matches(&v.uplink))
        else {
            continue;
        };
        if !absent.contains(&i) {
            continue;
        }
        match before.vports.get(&v.name) {
            Some(held) => {
                let mut held = held.clone();
                held.health = Health::Lost;
                after.vports.insert(v.name.clone(), held);
                lost.push(v.name.clone());
            }
            None => waiting.push(v.name.clone()),
        }
    }
    (lost, waiting)
}

/// Applies `config` over the uplinks present in `inv`, marking the vPorts of absent ones
/// lost, under the apply lock (so the state update after the apply is not interleaved with
/// another apply).
#[allow(clippy::too_many_arguments)]
pub fn reconcile<O: SriovOps>(
    ops: &mut O,
    config: Config,
    inv: Inventory,
    rediscover: &mut dyn FnMut(&O) -> Inventory,
    profiles: &ProfileSet,
    plan_opts: PlanOptions,
    apply_opts: &ApplyOptions,
    progress: &mut apply::Progress<'_>,
) -> Result<Outcome, ReconcileError> {
    let store = apply_opts.store;
    let _lock = provision::lock_apply(store, &config.state_dir)?;
    let before = State::load(store, &config.state_dir)?;
    let ready = ready_uplinks(&config, &inv);
    let (sub, absent) = split(&config, &ready);
    let applied = provision::apply_config_locked(
        ops, sub, inv, rediscover, profiles, plan_opts, apply_opts, progress,
    );
    let mut after = State::load(store, &config.state_dir)?;
    let (lost, waiting) = mark_lost(&config, &absent, &before, &mut after);
    if after != State::load(store, &config.state_dir)? {
        after.save(store, &config.state_dir)?;
    }
    let (prepared, report) = applied?;
    let restored = before
        .vports
        .iter()
        .filter(|(name, v)| {
            v.health == Health::Lost
                && after
                    .vports
                    .get(*name)
                    .is_some_and(|a| a.health == Health::Provisioned)
        })
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Outcome {
        absent_uplinks: absent
            .iter()
            .map(|i| config.uplinks[*i].selector.to_string())
            .collect(),
        lost,
        restored,
        waiting,
        plan: prepared.plan,
        report,
    })
}

impl Outcome {
    /// One line for the daemon's log.
    pub fn summary(&self) -> String {
        let mut parts = vec![if self.report.noop {
            "host already matches".to_string()
        } else {
            format!("applied {} step(s)", self.report.steps.len())
        }];
        let mut list = |what: &str, names: &[String]| {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        };
        list("lost", &self.lost);
        list("restored", &self.restored);
        list("waiting for their uplink", &self.waiting);
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::provision::sim_host::SimHost;
    use crate::provision::store::MemStore;

    /// The tests' files, kept apart by their temporary directories.
    static STORE: MemStore = MemStore::new();

    fn config(dir: &Path) -> Config {
        let text = format!(
            "state_dir = \"{}\"\n\
             [[uplink]]\npci = \"0000:01:00.0\"\n\
             [[uplink]]\npci = \"0000:02:00.0\"\n\
             [[vport]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n\
             [[vport]]\nname = \"b\"\nuplink = \"0000:02:00.0\"\nmac = \"02:00:00:00:02:01\"\n\
             [[vport]]\nname = \"c\"\nuplink = \"0000:02:00.0\"\nmac = \"02:00:00:00:02:02\"\n",
            dir.display()
        );
        crate::provision::config::parse(Path::new("host.toml"), &text).expect("the config parses")
    }

    fn run(host: &mut SimHost, dir: &Path, id: &str) -> Outcome {
        let inv = host.inventory();
        let opts = ApplyOptions {
            state_dir: dir.to_path_buf(),
            store: &STORE,
            retries: 1,
            retry_delay: Duration::ZERO,
            link_wait: Duration::ZERO,
            run_id: id.into(),
        };
        reconcile(
            host,
            config(dir),
            inv,
            &mut |h: &SimHost| h.inventory(),
            ProfileSet::builtin(),
            PlanOptions::default(),
            &opts,
            &mut |_, _, _, _| {},
        )
        .expect("the reconcile succeeds")
    }

    fn health(dir: &Path) -> Vec<(String, Health, String)> {
        State::load(&STORE, dir)
            .unwrap()
            .vports
            .into_iter()
            .map(|(n, v)| (n, v.health, format!("{:?}", v.path)))
            .collect()
    }

    /// Hot-add, hot-remove and re-add of the second PF, on the simulated host.
    #[test]
    fn uplink_comes_goes_and_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = SimHost::igb(2);
        let second = host.pfs.pop().unwrap();

        // Boot with one PF: a is provisioned, b and c wait.
        let o = run(&mut host, dir.path(), "r1");
        assert_eq!(o.absent_uplinks, ["pci 0000:02:00.0"]);
        assert_eq!(o.waiting, ["b", "c"]);
        assert_eq!(health(dir.path()).len(), 1);

        // Hot-add: b and c get VFs 0 and 1.
        host.pfs.push(second.clone());
        let o = run(&mut host, dir.path(), "r2");
        assert!(o.absent_uplinks.is_empty() && o.waiting.is_empty());
        let h = health(dir.path());
        assert_eq!(
            h[1],
            ("b".into(), Health::Provisioned, "Vf { index: 0 }".into())
        );
        assert_eq!(
            h[2],
            ("c".into(), Health::Provisioned, "Vf { index: 1 }".into())
        );

        // Hot-remove: b and c are lost, keep their VF indexes; a is untouched.
        host.pfs.pop();
        let o = run(&mut host, dir.path(), "r3");
        assert_eq!(o.lost, ["b", "c"]);
        let h = health(dir.path());
        assert_eq!(h[0].1, Health::Provisioned);
        assert_eq!(h[1], ("b".into(), Health::Lost, "Vf { index: 0 }".into()));
        assert_eq!(h[2], ("c".into(), Health::Lost, "Vf { index: 1 }".into()));
        // Still gone on the next event: still lost, nothing else changes.
        let o = run(&mut host, dir.path(), "r4");
        assert_eq!(o.lost, ["b", "c"]);
        assert!(o.report.noop);

        // Re-add (a fresh NIC: no VFs): restored onto the same indexes.
        host.pfs.push(second);
        let o = run(&mut host, dir.path(), "r5");
        assert_eq!(o.restored, ["b", "c"]);
        let h = health(dir.path());
        assert_eq!(
            h[1],
            ("b".into(), Health::Provisioned, "Vf { index: 0 }".into())
        );
        assert_eq!(
            h[2],
            ("c".into(), Health::Provisioned, "Vf { index: 1 }".into())
        );
        assert!(o.summary().contains("restored: b, c"), "{}", o.summary());
    }

    #[test]
    fn a_pf_without_netdev_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let host = SimHost::igb(2);
        let mut inv = host.inventory();
        let cfg = config(dir.path());
        assert_eq!(ready_uplinks(&cfg, &inv), [true, true]);
        inv.pci_functions
            .iter_mut()
            .filter(|f| f.bdf == "0000:02:00.0")
            .for_each(|f| f.netdevs.clear());
        assert_eq!(ready_uplinks(&cfg, &inv), [true, false]);
        let (sub, absent) = split(&cfg, &[true, false]);
        assert_eq!(absent, [1]);
        assert_eq!(sub.uplinks.len(), 1);
        assert_eq!(
            sub.vports
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
    }
}

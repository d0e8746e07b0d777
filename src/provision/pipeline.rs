//! The provisioning pipeline shared by `plan`, `apply`, `status` and (later) the
//! daemon and hotplug: config -> inventory -> checked uplinks -> state -> plan.

use std::path::Path;

use serde::Serialize;

use crate::model::inventory::Inventory;
use crate::model::profile::ProfileSet;
use crate::model::queues::{FlowRule, FlowTarget};
use crate::model::vf::VfConfig;
use crate::provision::apply::{self, ApplyError, ApplyOptions, ApplyReport};
use crate::provision::config::{self, Config, ConfigError, ResolvedUplink};
use crate::provision::ops::{EthtoolError, QueueOps, SriovOps};
use crate::provision::plan::{self, Plan, PlanError, PlanOptions, vf_matches};
use crate::provision::state::{Health, QueueMode, State, StateError, Steering, VportPath};
use crate::provision::store::{Held, Store};

/// Errors of the pipeline, each mapped to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Apply(#[from] Box<ApplyError>),
}

impl ProvisionError {
    /// 2 for bad input, 1 for everything that went wrong on the host.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProvisionError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// A config checked against the host, with the state and the plan for it.
pub struct Prepared {
    pub config: Config,
    pub uplinks: Vec<ResolvedUplink>,
    pub state: State,
    pub plan: Plan,
}

/// Loads, checks and plans. Reads only.
pub fn prepare(
    store: &dyn Store,
    config_path: &Path,
    inv: &Inventory,
    profiles: &ProfileSet,
    opts: PlanOptions,
) -> Result<Prepared, ProvisionError> {
    let config = config::load(store, config_path)?;
    prepare_config(store, config, inv, profiles, opts)
}

/// [`prepare`] for a config already parsed.
pub fn prepare_config(
    store: &dyn Store,
    config: Config,
    inv: &Inventory,
    profiles: &ProfileSet,
    opts: PlanOptions,
) -> Result<Prepared, ProvisionError> {
    let state = State::load(store, &config.state_dir)?;
    prepare_with_state(config, state, inv, profiles, opts)
}

/// [`prepare_config`] as an apply would plan it: the state's steering that the host no
/// longer holds as applied is read back first and marked drifted, so that `plan` and
/// `apply --dry-run` show the steps that program it again (apply does the same under its
/// lock). Reads only.
pub fn prepare_config_read_back(
    store: &dyn Store,
    config: Config,
    inv: &Inventory,
    profiles: &ProfileSet,
    opts: PlanOptions,
    q: &mut dyn QueueOps,
) -> Result<Prepared, ProvisionError> {
    let mut state = State::load(store, &config.state_dir)?;
    mark_drifted_steering(q, &mut state);
    prepare_with_state(config, state, inv, profiles, opts)
}

/// [`prepare_config`] with the state already loaded.
fn prepare_with_state(
    config: Config,
    state: State,
    inv: &Inventory,
    profiles: &ProfileSet,
    opts: PlanOptions,
) -> Result<Prepared, ProvisionError> {
    let uplinks = config::check_against(&config, inv)?;
    let plan = plan::plan(inv, profiles, &config, &uplinks, &state, opts)?;
    Ok(Prepared {
        config,
        uplinks,
        state,
        plan,
    })
}

/// The lock file in the state directory that one apply at a time holds.
pub const APPLY_LOCK: &str = "apply.lock";

/// Takes the apply lock of a state directory, waiting for a running apply to finish.
pub fn lock_apply<'s>(store: &'s dyn Store, state_dir: &Path) -> Result<Held<'s>, ProvisionError> {
    Ok(store
        .lock_exclusive(&state_dir.join(APPLY_LOCK))
        .map_err(StateError::from)?)
}

/// Rolls back an interrupted run, then plans afresh (the host may have changed) and
/// applies. `rediscover` re-reads the inventory after a recovery. Holds the apply lock, so a
/// manual apply and the daemon's never interleave.
#[allow(clippy::too_many_arguments)]
pub fn apply_config<O: SriovOps>(
    ops: &mut O,
    config: Config,
    inv: Inventory,
    rediscover: &mut dyn FnMut(&O) -> Inventory,
    profiles: &ProfileSet,
    plan_opts: PlanOptions,
    apply_opts: &ApplyOptions,
    progress: &mut apply::Progress<'_>,
) -> Result<(Prepared, ApplyReport), ProvisionError> {
    // Bad input changes nothing: a config naming uplinks this host lacks is refused before
    // taking the lock, which would create the state directory (checked again under it).
    config::check_against(&config, &inv)?;
    let _lock = lock_apply(apply_opts.store, &config.state_dir)?;
    apply_config_locked(
        ops, config, inv, rediscover, profiles, plan_opts, apply_opts, progress,
    )
}

/// [`apply_config`] for a caller that already holds [`lock_apply`] (the reconciler, which
/// also updates the state after the apply).
#[allow(clippy::too_many_arguments)]
pub fn apply_config_locked<O: SriovOps>(
    ops: &mut O,
    config: Config,
    inv: Inventory,
    rediscover: &mut dyn FnMut(&O) -> Inventory,
    profiles: &ProfileSet,
    plan_opts: PlanOptions,
    apply_opts: &ApplyOptions,
    progress: &mut apply::Progress<'_>,
) -> Result<(Prepared, ApplyReport), ProvisionError> {
    let mut state = State::load(apply_opts.store, &config.state_dir)?;
    let recovered = apply::recover(ops, &state, apply_opts).map_err(Box::new)?;
    let inv = if recovered > 0 { rediscover(ops) } else { inv };
    // Steering that is no longer on the host as applied (deleted behind vportd's back) is
    // programmed afresh, as a changed VF setting is set again.
    if let Some(q) = ops.queues() {
        mark_drifted_steering(q, &mut state);
    }
    // Recovery undoes host changes only; the state file it leaves is the one loaded.
    let prepared = prepare_with_state(config, state, &inv, profiles, plan_opts)?;
    let (mut report, _) = apply::apply(ops, &prepared.plan, &prepared.state, apply_opts, progress)
        .map_err(Box::new)?;
    report.recovered_steps = recovered;
    Ok((prepared, report))
}

/// One vPort's desired and actual state.
#[derive(Debug, Clone, Serialize)]
pub struct VportStatus {
    pub vport: String,
    pub uplink: String,
    pub path: VportPath,
    pub reason: String,
    pub health: Health,
    pub vf_bdf: Option<String>,
    pub desired: Option<VfConfig>,
    pub actual: Option<VfConfig>,
    /// What differs from what was applied; empty when in sync.
    pub drift: Vec<String>,
    /// A software vPort's switch port counters, as the daemon last published them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<crate::model::port_counters::PortSnapshot>,
    /// The vPort's own queues (a VF's on the VF's function, or the PF's queues steered
    /// to it), each by index and IRQ, and the CPUs they belong on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_set: Option<crate::provision::state::VportQueueSet>,
}

/// Compares the state with the host.
pub fn status(state: &State, inv: &Inventory) -> Vec<VportStatus> {
    status_with(state, inv, &Default::default())
}

/// The vPorts' own CPU sets (`cpus = "..."`), by name, for their queue sets.
pub fn vport_cpus(config: &Config) -> std::collections::BTreeMap<String, Vec<u32>> {
    config
        .vports
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.cpus.clone()?)))
        .collect()
}

/// [`status`] with the vPorts' configured CPU sets (see [`vport_cpus`]), shown in their
/// queue sets as the rebalancer uses them.
pub fn status_with(
    state: &State,
    inv: &Inventory,
    cpus: &std::collections::BTreeMap<String, Vec<u32>>,
) -> Vec<VportStatus> {
    let mut out = Vec::new();
    let sets = crate::provision::state::queue_sets(state, inv, cpus);
    for (name, v) in &state.vports {
        let pf = inv.pci_functions.iter().find(|f| f.bdf == v.uplink);
        let mut drift = Vec::new();
        let mut actual = None;
        let mut health = v.health;
        match (&v.path, pf) {
            // A `[[switch]]` member has no PF to lose.
            _ if crate::provision::state::switch_member(&v.uplink).is_some() => {}
            (_, None) => {
                health = Health::Lost;
                drift.push(format!("uplink {} is gone", v.uplink));
            }
            (VportPath::Vf { index }, Some(f)) => {
                let entry = f
                    .sriov
                    .as_ref()
                    .and_then(|s| s.vfs.iter().find(|e| e.index == *index));
                match entry {
                    None => drift.push(format!("VF {index} of {} does not exist", v.uplink)),
                    Some(e) => {
                        if v.vf_bdf.as_deref().is_some_and(|b| b != e.bdf) {
                            drift.push(format!(
                                "VF {index} is now {} (was {})",
                                e.bdf,
                                v.vf_bdf.as_deref().unwrap_or("-")
                            ));
                        }
                        actual = e.config.clone();
                        if let (Some(want), Some(got)) = (&v.applied, &e.config)
                            && !vf_matches(want, got)
                        {
                            drift.extend(describe_drift(want, got));
                        }
                    }
                }
            }
            (VportPath::Software | VportPath::Queues { .. }, Some(_)) => {}
        }
        out.push(VportStatus {
            vport: name.clone(),
            uplink: v.uplink.clone(),
            path: v.path.clone(),
            reason: v.reason.clone(),
            health,
            vf_bdf: v.vf_bdf.clone(),
            desired: v.applied.clone(),
            actual,
            drift,
            switch: None,
            queue_set: sets.iter().find(|q| &q.vport == name).cloned(),
        });
    }
    out
}

/// What the PF holds of one vPort's programmed steering, against the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SteeringCheck {
    /// What differs from what was applied, as sentences; empty when in sync.
    pub drift: Vec<String>,
    /// The rule slot holds the rule apply inserted.
    pub rule_ours: bool,
    /// A read failed, so the check is incomplete (said in `drift`).
    pub unreadable: bool,
}

/// Compares the steering apply programmed for vPort `name` with its PF, by what the state
/// recorded: the RSS context by id with its table, the ntuple rule at its slot (MAC, VLAN
/// and target), the macvlan station found by MAC on the PF's ifindex. Reads only.
pub fn check_vport_steering(
    q: &mut dyn QueueOps,
    state: &State,
    name: &str,
    st: &Steering,
) -> SteeringCheck {
    let mut c = SteeringCheck::default();
    let v = state.vports.get(name);
    let pf = v.map(|v| v.uplink.as_str()).unwrap_or("its PF");
    let Some(crate::model::mac::Mac(mac)) = crate::model::mac::Mac::parse_lenient(&st.mac) else {
        c.drift.push(format!(
            "the state records MAC {:?}, which is not a MAC",
            st.mac
        ));
        return c;
    };
    if st.mode == QueueMode::RssContext {
        check_context(q, &mut c, pf, st);
    }
    if let Some(loc) = st.location {
        check_rule(q, &mut c, pf, st, v.map(|v| &v.path), (mac, loc));
    }
    if st.mode == QueueMode::Vmdq {
        check_macvlan(q, &mut c, pf, st, mac);
    }
    c
}

/// Notes a read that failed: the check is incomplete, and says so.
fn unreadable(c: &mut SteeringCheck, pf: &str, what: String, e: EthtoolError) {
    c.unreadable = true;
    c.drift.push(format!("cannot read {what} on {pf}: {e}"));
}

/// The RSS context by id, with the table applied.
fn check_context(q: &mut dyn QueueOps, c: &mut SteeringCheck, pf: &str, st: &Steering) {
    let ifx = st.pf_ifindex;
    match st.context {
        None => c
            .drift
            .push(format!("the state records no RSS context id on {pf}")),
        Some(id) => match q.rss_context(ifx, id) {
            Ok(Some(t)) if t == st.table => {}
            Ok(Some(_)) => c.drift.push(format!(
                "RSS context {id} on {pf} holds another indirection table than the one applied"
            )),
            Ok(None) => c.drift.push(format!("RSS context {id} on {pf} is gone")),
            Err(e) => unreadable(c, pf, format!("RSS context {id}"), e),
        },
    }
}

/// The ntuple rule at its slot: MAC, VLAN and target as applied.
fn check_rule(
    q: &mut dyn QueueOps,
    c: &mut SteeringCheck,
    pf: &str,
    st: &Steering,
    path: Option<&VportPath>,
    (mac, loc): ([u8; 6], u32),
) {
    let ifx = st.pf_ifindex;
    let target = match (st.mode, st.context, path) {
        (QueueMode::RssContext, Some(id), _) => Some(FlowTarget::Context { id }),
        (QueueMode::Ntuple, _, Some(VportPath::Queues { first, .. })) => Some(FlowTarget::Queue {
            index: u64::from(*first),
        }),
        _ => None,
    };
    let want = target.map(|target| FlowRule {
        dst_mac: mac,
        vlan: st.vlan,
        location: loc,
        target,
    });
    match q.rule(ifx, loc) {
        Ok(Some(r)) if Some(r) == want => c.rule_ours = true,
        Ok(Some(r)) => c.drift.push(format!(
            "ntuple rule {loc} on {pf} is not the one applied (dst {}{} -> {})",
            crate::model::mac::Mac(r.dst_mac),
            r.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default(),
            match r.target {
                FlowTarget::Queue { index } => format!("queue {index}"),
                FlowTarget::Context { id } => format!("context {id}"),
            }
        )),
        Ok(None) => c.drift.push(format!(
            "ntuple rule {loc} on {pf} (dst {}) is gone",
            st.mac
        )),
        Err(e) => unreadable(c, pf, format!("ntuple rule {loc}"), e),
    }
}

/// The macvlan station, found by MAC on the PF.
fn check_macvlan(
    q: &mut dyn QueueOps,
    c: &mut SteeringCheck,
    pf: &str,
    st: &Steering,
    mac: [u8; 6],
) {
    let ifx = st.pf_ifindex;
    match q.find_macvlan(ifx, mac) {
        Ok(Some(i)) if Some(i) == st.macvlan => {}
        Ok(Some(i)) => c.drift.push(format!(
            "the macvlan with MAC {} on {pf} is ifindex {i}, not the {} applied",
            st.mac,
            st.macvlan.map(|m| m.to_string()).unwrap_or("-".into())
        )),
        Ok(None) => c.drift.push(format!(
            "the macvlan station with MAC {} on {pf} is gone",
            st.mac
        )),
        Err(e) => unreadable(c, pf, format!("the macvlan with MAC {}", st.mac), e),
    }
}

/// Adds to `list` (from [`status`]) the steering drift of each vPort on hardware queues:
/// a context, rule or macvlan deleted or changed behind vportd's back.
pub fn check_steering(q: &mut dyn QueueOps, state: &State, list: &mut [VportStatus]) {
    for (name, st) in &state.steering {
        // A vPort whose uplink is gone says so already; its steering went with it.
        let Some(s) = list
            .iter_mut()
            .find(|s| &s.vport == name && s.health != Health::Lost)
        else {
            continue;
        };
        s.drift
            .extend(check_vport_steering(q, state, name, st).drift);
    }
}

/// Marks the state's steering that the host no longer holds as applied, so that the plan
/// programs it afresh: what is left of it is removed first (a rule slot now holding
/// someone else's rule is forgotten, not deleted). An incomplete check marks nothing: the
/// apply steps read back what they touch.
pub fn mark_drifted_steering(q: &mut dyn QueueOps, state: &mut State) {
    let names: Vec<String> = state.steering.keys().cloned().collect();
    for name in names {
        let c = check_vport_steering(q, state, &name, &state.steering[&name]);
        if c.drift.is_empty() || c.unreadable {
            continue;
        }
        let st = state.steering.get_mut(&name).expect("listed above");
        st.drifted = true;
        if !c.rule_ours {
            // Gone, or another's: nothing of ours to delete there.
            st.location = None;
        }
    }
}

fn describe_drift(want: &VfConfig, got: &VfConfig) -> Vec<String> {
    let mut d = Vec::new();
    let mut diff = |what: &str, w: String, g: String| {
        if w != g {
            d.push(format!("{what} is {g}, applied {w}"));
        }
    };
    diff("mac", want.mac.to_string(), got.mac.to_string());
    diff("vlan", want.vlan.to_string(), got.vlan.to_string());
    diff("qos", want.qos.to_string(), got.qos.to_string());
    // The tag's protocol matters only with a tag (as in vf_matches); unread is 802.1Q.
    if want.vlan != 0 {
        let proto = |c: &VfConfig| c.vlan_proto.unwrap_or(crate::model::vf::VlanProto::Dot1Q);
        diff(
            "vlan_proto",
            proto(want).to_string(),
            proto(got).to_string(),
        );
    }
    if let Some(r) = want.max_tx_rate {
        diff(
            "max_tx_rate",
            r.to_string(),
            got.max_tx_rate.unwrap_or(0).to_string(),
        );
    }
    if let Some(r) = want.min_tx_rate {
        diff(
            "min_tx_rate",
            r.to_string(),
            got.min_tx_rate.unwrap_or(0).to_string(),
        );
    }
    if let Some(s) = want.spoofchk {
        diff(
            "spoofchk",
            s.to_string(),
            format!("{:?}", got.spoofchk.unwrap_or(!s)),
        );
    }
    if let Some(t) = want.trust {
        diff(
            "trust",
            t.to_string(),
            format!("{:?}", got.trust.unwrap_or(!t)),
        );
    }
    if let Some(l) = &want.link_state {
        diff(
            "link_state",
            l.to_string(),
            got.link_state.map(|g| g.to_string()).unwrap_or_default(),
        );
    }
    if d.is_empty() {
        d.push("VF settings differ from what was applied".into());
    }
    d
}

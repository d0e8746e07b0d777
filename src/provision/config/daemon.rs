//! The `[daemon]` table: `vportd daemon`'s settings, so that tuning the daemon means editing
//! the config (and `systemctl restart`), not the unit. Every key mirrors a flag of
//! `vportd daemon`, and a flag given on the command line wins over the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::checker::Checker;
use super::keys::DAEMON_KEYS;
use crate::facts::parse;
use crate::model::location::Location;

/// `[daemon]` as validated; None: the key was not written (the flag's default applies).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DaemonSettings {
    /// The rebalancer's period in milliseconds (`--period-ms`).
    pub period_ms: Option<u64>,
    /// Where to serve metrics; `Some(None)` for `"off"` (`--metrics`).
    pub metrics: Option<Option<SocketAddr>>,
    /// The control socket's path; `"off"` for none (`--socket`).
    pub socket: Option<String>,
    /// The group that may use the socket (`--socket-group`).
    pub socket_group: Option<String>,
    /// Listen to kernel uevents (`--no-uevents` is `uevents = false`).
    pub uevents: Option<bool>,
    /// Per-NIC CPU sets by PCI address (`--nic-cpus BDF=LIST`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nic_cpus: BTreeMap<String, Vec<u32>>,
    /// CPUs never to put queue interrupts on (`--avoid-cpus`).
    pub avoid_cpus: Option<Vec<u32>>,
    /// Point moved queues' RPS/XPS at their new CPU (`--steering`).
    pub steering: Option<bool>,
    /// The rebalancer's thresholds (`--upper`, `--lower`).
    pub upper: Option<f64>,
    pub lower: Option<f64>,
    /// "error", "warn", "info" or "debug" (`--log-level`).
    pub log_level: Option<String>,
    /// Where the table starts; None when there is none.
    pub at: Option<Location>,
}

impl DaemonSettings {
    pub fn is_empty(&self) -> bool {
        self.at.is_none()
    }
}

/// `[daemon]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDaemon {
    period_ms: Option<Spanned<i64>>,
    metrics: Option<Spanned<String>>,
    socket: Option<Spanned<String>>,
    socket_group: Option<Spanned<String>>,
    uevents: Option<bool>,
    nic_cpus: Option<BTreeMap<String, Spanned<String>>>,
    avoid_cpus: Option<Spanned<String>>,
    steering: Option<bool>,
    upper: Option<Spanned<f64>>,
    lower: Option<Spanned<f64>>,
    log_level: Option<Spanned<String>>,
}

/// The levels `log_level` takes, as `--log-level` spells them.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug"];

/// The `[daemon]` table at `value` (the top level's `daemon` key).
pub(super) fn daemon(
    ck: &mut Checker<'_>,
    key: &Spanned<toml::de::DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
) -> DaemonSettings {
    let DeValue::Table(t) = value.get_ref() else {
        ck.report(
            &key.span(),
            format!(
                "daemon: expected a [daemon] table, found {}",
                value.get_ref().type_str()
            ),
            "write the daemon's settings under one [daemon] header (single brackets)",
        );
        return DaemonSettings::default();
    };
    let table: Spanned<DeTable<'_>> = Spanned::new(value.span(), t.clone());
    let raw: RawDaemon = ck.table(&table, "[daemon]", "[daemon]", DAEMON_KEYS);
    let what = "[daemon]";
    let mut s = DaemonSettings {
        at: Some(ck.at(&key.span())),
        uevents: raw.uevents,
        steering: raw.steering,
        socket_group: raw.socket_group.as_ref().map(|g| g.get_ref().clone()),
        ..DaemonSettings::default()
    };
    s.period_ms = super::checker::ranged(
        ck,
        what,
        "period_ms",
        &raw.period_ms,
        (10, 600_000),
        "period_ms takes milliseconds from 10 to 600000, e.g. 1000",
    );
    if let Some(m) = &raw.metrics {
        s.metrics = match m.get_ref().as_str() {
            "off" | "none" => Some(None),
            addr => match addr.parse::<SocketAddr>() {
                Ok(a) => Some(Some(a)),
                Err(e) => {
                    ck.report(
                        &m.span(),
                        format!("{what}: metrics {addr:?} is not an address ({e})"),
                        "metrics takes an address and port such as \"127.0.0.1:9477\", or \"off\"",
                    );
                    None
                }
            },
        };
    }
    if let Some(p) = &raw.socket {
        let text = p.get_ref();
        if text == "off" || text.starts_with('/') {
            s.socket = Some(text.clone());
        } else {
            ck.report(
                &p.span(),
                format!("{what}: socket {text:?} is not an absolute path"),
                "socket takes an absolute path such as \"/run/vportd/vportd.sock\", or \"off\"",
            );
        }
    }
    s.nic_cpus = nic_cpus(ck, &raw);
    if let Some(l) = &raw.avoid_cpus {
        match parse::cpulist(l.get_ref()) {
            Ok(c) => s.avoid_cpus = Some(c),
            Err(e) => ck.report(
                &l.span(),
                format!("{what}: avoid_cpus: {e}"),
                "avoid_cpus takes a CPU list such as \"0-3,16-19\"",
            ),
        }
    }
    thresholds(ck, &raw, &mut s);
    if let Some(l) = &raw.log_level {
        match LOG_LEVELS
            .iter()
            .find(|w| w.eq_ignore_ascii_case(l.get_ref()))
        {
            Some(w) => s.log_level = Some(w.to_string()),
            None => ck.report(
                &l.span(),
                format!(
                    "{what}: log_level {:?} is not one of error, warn, info, debug",
                    l.get_ref()
                ),
                "log_level takes \"error\", \"warn\", \"info\" or \"debug\"",
            ),
        }
    }
    s
}

/// `nic_cpus = { "0000:01:00.0" = "2-7" }`: PCI addresses to CPU lists.
fn nic_cpus(ck: &mut Checker<'_>, raw: &RawDaemon) -> BTreeMap<String, Vec<u32>> {
    let mut out = BTreeMap::new();
    for (bdf, list) in raw.nic_cpus.iter().flatten() {
        if !is_bdf(bdf) {
            ck.report(
                &list.span(),
                format!("[daemon]: nic_cpus: {bdf:?} is not a PCI address"),
                "nic_cpus is keyed by the NIC's PCI address, e.g. { \"0000:01:00.0\" = \"2-7\" }",
            );
            continue;
        }
        match parse::cpulist(list.get_ref()) {
            Ok(c) => {
                out.insert(bdf.clone(), c);
            }
            Err(e) => ck.report(
                &list.span(),
                format!("[daemon]: nic_cpus {bdf}: {e}"),
                "each NIC's CPU set is a CPU list such as \"2-7\"",
            ),
        }
    }
    out
}

/// `upper` and `lower`: shares of a CPU in (0, 1], lower below upper when both are written
/// (the daemon checks a written one against the other's default when it starts).
fn thresholds(ck: &mut Checker<'_>, raw: &RawDaemon, s: &mut DaemonSettings) {
    let mut ok = true;
    for (key, v) in [("upper", &raw.upper), ("lower", &raw.lower)] {
        if let Some(v) = v
            && !(*v.get_ref() > 0.0 && *v.get_ref() <= 1.0)
        {
            ck.report(
                &v.span(),
                format!("[daemon]: {key} {} is outside (0, 1]", v.get_ref()),
                "upper and lower are shares of a CPU's time, e.g. upper = 0.8, lower = 0.3",
            );
            ok = false;
        }
    }
    if let (Some(u), Some(l)) = (&raw.upper, &raw.lower)
        && ok
        && l.get_ref() >= u.get_ref()
    {
        ck.report(
            &l.span(),
            format!("[daemon]: lower {} is not below upper {}", l.get_ref(), u.get_ref()),
            "a CPU idler than lower gives its queues away, one busier than upper sheds them: lower < upper",
        );
        ok = false;
    }
    if ok {
        s.upper = raw.upper.as_ref().map(|u| *u.get_ref());
        s.lower = raw.lower.as_ref().map(|l| *l.get_ref());
    }
}

/// `dddd:bb:dd.f` in lower-case hex, as sysfs names PCI functions.
fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11])
}

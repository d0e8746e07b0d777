//! The daemon's look for irqbalance: at start and every [`EVERY`] periods, the irqbalance
//! processes of the host go into the metrics (`vportd_irqbalance_running`), and one
//! without vportd's policy script is warned about once, when it appears (and again if it
//! goes and comes back), since next to it the rebalancer may end up moving nothing
//! (docs/irqbalance.md).

use std::path::Path;

use crate::daemon::metrics::Stats;
use crate::facts::irqbalance::{self, IrqbalanceProcess};
use crate::host::fs::KernelFs;

/// Periods between two looks: a /proc scan is a few hundred small reads, cheap, but there
/// is no hurry either (irqbalance itself rebalances every 10 s).
pub const EVERY: u64 = 10;

/// What the daemon last said about irqbalance.
#[derive(Debug, Default)]
pub struct Watch {
    periods: u64,
    said: Option<String>,
}

impl Watch {
    /// One period: looks when it is time (the first call included), records what it found
    /// into `stats` and says a new warning on stderr.
    pub fn period(&mut self, root: &Path, stats: &mut Stats) {
        let due = self.periods.is_multiple_of(EVERY);
        self.periods += 1;
        if !due {
            return;
        }
        match irqbalance::find(&KernelFs::at(root)) {
            Ok(procs) => {
                match self.news(&procs) {
                    Some((true, line)) => log::warn!("{line}"),
                    Some((false, line)) => log::info!("{line}"),
                    None => {}
                }
                stats.irqbalance = Some(procs);
            }
            Err(e) => {
                let line = format!("cannot tell whether irqbalance runs: {e}");
                if self.said.as_ref() != Some(&line) {
                    log::warn!("{line}");
                    self.said = Some(line);
                }
            }
        }
    }

    /// What to say about `procs`, when it differs from what was last said: the warning
    /// (true: at warning priority), or that the warning no longer holds.
    fn news(&mut self, procs: &[IrqbalanceProcess]) -> Option<(bool, String)> {
        let now = irqbalance::warning(procs);
        if now == self.said {
            return None;
        }
        let was = std::mem::replace(&mut self.said, now.clone());
        match (now, was) {
            (Some(w), _) => Some((true, w)),
            (None, Some(_)) if procs.is_empty() => {
                Some((false, "irqbalance no longer runs".into()))
            }
            (None, Some(_)) => Some((
                false,
                "irqbalance now runs with vportd's policy script".into(),
            )),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::irqbalance::parse_cmdline;

    #[test]
    fn the_warning_is_said_once_and_its_end_too() {
        let bare = parse_cmdline(5, "irqbalance\0--foreground\0");
        let ours = parse_cmdline(
            6,
            "irqbalance\0--policyscript=/usr/lib/vportd/irqbalance-policy\0",
        );
        let mut w = Watch::default();
        assert_eq!(w.news(&[]), None, "nothing to say when none runs");
        let (warn, first) = w.news(std::slice::from_ref(&bare)).unwrap();
        assert!(
            warn && first.starts_with("irqbalance is running (pid 5)"),
            "{first}"
        );
        assert_eq!(w.news(std::slice::from_ref(&bare)), None, "said once");
        assert_eq!(
            w.news(std::slice::from_ref(&ours)),
            Some((
                false,
                "irqbalance now runs with vportd's policy script".into()
            ))
        );
        assert!(w.news(&[bare]).is_some(), "said again when it comes back");
        assert_eq!(
            w.news(&[]),
            Some((false, "irqbalance no longer runs".into()))
        );
    }

    #[test]
    fn a_root_without_processes_has_no_irqbalance() {
        let dir = tempfile::tempdir().unwrap();
        let mut stats = Stats::default();
        let mut w = Watch::default();
        w.period(dir.path(), &mut stats);
        assert_eq!(stats.irqbalance, Some(Vec::new()));
        stats.irqbalance = None;
        for _ in 1..EVERY {
            w.period(dir.path(), &mut stats);
        }
        assert_eq!(
            stats.irqbalance, None,
            "not looked again before EVERY periods"
        );
        w.period(dir.path(), &mut stats);
        assert!(stats.irqbalance.is_some());
    }
}

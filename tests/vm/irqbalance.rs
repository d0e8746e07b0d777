//! Debian's irqbalance beside vportd on real igb (PF) and igbvf (VF) queue IRQs in the guest
//! (docs/irqbalance.md; scenarios/irqbalance.sh). Every queue IRQ is pinned to CPU 3 before
//! each run:
//! - the control: irqbalance `--oneshot` without a policy script bans none and moves queues;
//! - with `--policyscript=/usr/lib/vportd/irqbalance-policy` (the shipped wrapper) it bans
//!   exactly the queue IRQs and leaves each on CPU 3;
//! - irqbalance `--foreground` with the policy and the daemon together for 12 s: the daemon
//!   reports irqbalance running with the policy and no other writer on its queues.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

fn numbers(text: &str, pre: &str, post: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(pre)?.strip_suffix(post)?.parse().ok())
        .collect()
}

fn affinities(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let (irq, aff) = l.split_once(' ')?;
            Some((irq.parse().ok()?, aff.trim().to_string()))
        })
        .collect()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn irqbalance_with_the_policy_leaves_vportds_queues_alone() {
    crate::stall_retry(
        "irqbalance_with_the_policy_leaves_vportds_queues_alone",
        irqbalance_once,
    );
}

fn irqbalance_once() {
    let test = "irqbalance_with_the_policy_leaves_vportds_queues_alone";
    let Some(_) = rig_or_skip(test) else { return };
    let rig = Rig::new()
        .pfs(1)
        .cpus(4)
        .program("/usr/sbin/irqbalance")
        .file(
            "/usr/lib/vportd/irqbalance-policy",
            include_bytes!("../../udev/irqbalance-policy").to_vec(),
            0o755,
        );
    let mut guest = boot(test, rig);
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/irqbalance.sh"),
        Duration::from_secs(300),
    );
    let context = format!(
        "stdout:\n{}\nstderr:\n{}\ninterrupts:\n{}",
        o.stdout,
        o.stderr,
        o.text("interrupts")
    );
    assert_eq!(o.status, 0, "the scenario failed\n{context}");
    let queues: BTreeSet<u32> = o
        .text("queues")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // The PF's (igb gives it 2 once VFs are on: eth0-TxRx-0, eth0-rx-1) and each VF's rx
    // and tx.
    assert!(queues.len() >= 6, "{queues:?}\n{context}");

    let plain = o.text("plain.log");
    assert!(
        numbers(&plain, "IRQ ", " was BANNED.").is_empty(),
        "{plain}"
    );
    let moved = affinities(&o.text("aff.plain"))
        .into_iter()
        .filter(|(_, a)| a != "3")
        .count();
    assert!(
        moved > 0,
        "the control: irqbalance without the policy moved no queue IRQ off CPU 3, so the run \
         with it would prove nothing:\n{}\n{plain}",
        o.text("aff.plain")
    );

    let policy = o.text("policy.log");
    assert_eq!(
        numbers(&policy, "IRQ ", " was BANNED."),
        queues,
        "exactly the queue IRQs banned:\n{policy}"
    );
    let added = numbers(&policy, "Adding IRQ ", " to database");
    assert!(
        !added.is_empty() && added.is_disjoint(&queues),
        "the other IRQs balanced, no queue among them:\n{policy}"
    );
    for (irq, aff) in affinities(&o.text("aff.policy")) {
        assert_eq!(
            aff, "3",
            "IRQ {irq} was moved by irqbalance with the policy:\n{policy}"
        );
    }

    let m = o.text("metrics");
    let log = o.text("daemon.log");
    assert_eq!(
        metric(&m, "vportd_irqbalance_running"),
        Some(1.0),
        "{m}\n{log}"
    );
    assert_eq!(
        metric(&m, "vportd_irqbalance_without_policy"),
        Some(0.0),
        "{m}\n{log}"
    );
    assert_eq!(
        metric(&m, "vportd_external_changes_total"),
        Some(0.0),
        "{m}\n{log}"
    );
    assert_eq!(metric(&m, "vportd_yielded_irqs"), Some(0.0), "{m}\n{log}");
    assert!(!log.contains("irqbalance is running"), "{log}");
    eprintln!(
        "{test}: {} queue IRQs banned; control moved {moved}; together: {}",
        queues.len(),
        o.text("aff.together").replace('\n', "; ")
    );
}

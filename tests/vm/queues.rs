//! PF queues and per-vPort queue refusals on the real igb driver (issue 9): vportd sets
//! combined channels and the RSS indirection table, checked with `ethtool -l` and `-x`;
//! vPorts that ask for queues are placed (or refused) with igb's reasons; vportd's own
//! RSS-context, ntuple and l2-fwd-offload requests meet igb's real refusals, as the
//! ethtool binary's do. (tests/queues_bytes.rs proves those requests' bytes.)

use std::time::Duration;

use serde_json::Value;
use vportd::model::queues::{equal_table, weighted_table};

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

/// "Combined:" under "Current hardware settings:" of `ethtool -l`.
fn current_combined(l: &str) -> u32 {
    let current = l
        .split("Current hardware settings:")
        .nth(1)
        .unwrap_or_else(|| panic!("ethtool -l output without current settings:\n{l}"));
    current
        .lines()
        .find_map(|x| x.trim().strip_prefix("Combined:"))
        .unwrap_or_else(|| panic!("no Combined in:\n{l}"))
        .trim()
        .parse()
        .unwrap()
}

/// The indirection table of `ethtool -x` ("    0:      0     1     2 ..." rows).
fn rss_table(x: &str) -> Vec<u32> {
    x.lines()
        .filter_map(|l| {
            let (idx, rest) = l.trim().split_once(':')?;
            idx.trim().parse::<u32>().ok()?;
            Some(
                rest.split_whitespace()
                    .map(|q| q.parse::<u32>().unwrap())
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

#[test]
fn pf_channels_rss_and_queue_refusals_on_igb() {
    crate::stall_retry(
        "pf_channels_rss_and_queue_refusals_on_igb",
        pf_channels_rss_and_queue_refusals_on_igb_once,
    );
}

fn pf_channels_rss_and_queue_refusals_on_igb_once() {
    let test = "pf_channels_rss_and_queue_refusals_on_igb";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/queues.sh"),
        Duration::from_secs(400),
    )
    .success();
    let rc = |s: &str| o.text(&format!("{s}.rc")).trim().parse::<i32>().unwrap();
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));

    // The rig's facts: 4 combined channels without VFs, a 128-entry table, ntuple and
    // l2-fwd-offload fixed off.
    assert_eq!(current_combined(&o.text("before.l")), 4);
    assert_eq!(rss_table(&o.text("before.x")).len(), 128);
    let k = o.text("before.k");
    assert!(k.contains("ntuple-filters: off [fixed]"), "{k}");
    assert!(k.contains("l2-fwd-offload: off [fixed]"), "{k}");

    // plan: channels 4 -> 3 (lowering: the table back to default first, since the kernel
    // refuses fewer channels than a user-set table uses), then the weighted table; qa gets
    // no queues, and says why.
    assert_eq!(rc("plan-weights"), 0, "{}", out("plan-weights"));
    let plan: Value = serde_json::from_str(&o.text("plan-weights.out")).unwrap();
    let actions: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.starts_with(&["set-rss-table", "set-channels", "set-rss-table"]),
        "{actions:?}"
    );
    let qa = &plan["placements"][0];
    assert_eq!(qa["vport"], "qa");
    assert_eq!(qa["path"]["kind"], "software");
    let reason = qa["reason"].as_str().unwrap();
    for why in [
        "has no RSS contexts",
        "l2-fwd-offload off [fixed]",
        "ntuple-filters off [fixed]",
    ] {
        assert!(reason.contains(why), "reason lacks {why:?}: {reason}");
    }

    // apply: ethtool -l shows 3, ethtool -x the same table as `ethtool -X weight 1 2 3`.
    assert_eq!(rc("weights"), 0, "{}", out("weights"));
    assert_eq!(current_combined(&o.text("weights.l")), 3);
    assert_eq!(
        rss_table(&o.text("weights.x")),
        weighted_table(128, 0, &[1, 2, 3]).unwrap(),
        "{}",
        o.text("weights.x")
    );
    // The channel change re-created the queue interrupts (the rebalancer's topology event).
    assert_ne!(
        o.text("before.irqs"),
        o.text("weights.irqs"),
        "IRQs unchanged after ethtool -L"
    );
    // Again: nothing to do.
    assert_eq!(rc("weights-again"), 0, "{}", out("weights-again"));
    assert!(
        !out("weights-again").contains("channels"),
        "{}",
        out("weights-again")
    );
    // Down to 2 with an equal spread: the table of ours goes back to default first, or the
    // kernel would refuse fewer channels than the table uses.
    assert_eq!(rc("equal"), 0, "{}", out("equal"));
    assert_eq!(current_combined(&o.text("equal.l")), 2);
    assert_eq!(rss_table(&o.text("equal.x")), equal_table(128, 0, 2));
    // Above the maximum: refused by the plan, nothing touched.
    assert_eq!(rc("too-many"), 1, "{}", out("too-many"));
    assert!(
        out("too-many").contains("channels = 64 but the PF allows at most"),
        "{}",
        out("too-many")
    );
    assert_eq!(current_combined(&o.text("too-many.l")), 2);
    // placement = "queues" that igb cannot give: a blocker naming the reasons.
    assert_eq!(rc("forced"), 1, "{}", out("forced"));
    assert!(
        out("forced").contains("has no RSS contexts"),
        "{}",
        out("forced")
    );

    // vportd's requests for what igb lacks, refused by the real driver.
    assert_eq!(rc("probe"), 0, "{}", out("probe"));
    let probe: Vec<Value> = o
        .text("probe.out")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let result = |c: &str| {
        probe
            .iter()
            .find(|p| p["control"] == c)
            .unwrap_or_else(|| panic!("no {c} in {probe:?}"))
            .clone()
    };
    for c in [
        "rss-context",
        "ntuple-context",
        "ntuple-queue",
        "l2-fwd-offload",
    ] {
        let r = result(c);
        assert_eq!(r["ok"], false, "{c}: {r}");
        assert_eq!(r["errno"], "EOPNOTSUPP", "{c}: {r}");
        assert!(r["detail"].as_str().unwrap().contains("eth1"), "{c}: {r}");
    }
    // A VF vPort's queue set in `vportd status`: on the VF's own PCI function, every queue
    // by index and IRQ, each IRQ in /proc/interrupts under the same name.
    assert_eq!(rc("vf-apply"), 0, "{}", out("vf-apply"));
    assert_eq!(rc("vf-status"), 0, "{}", out("vf-status"));
    let status: Value = serde_json::from_str(&o.text("vf-status.out")).unwrap();
    let vf0 = status
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vport"] == "vf0")
        .unwrap_or_else(|| panic!("no vf0 in {status}"));
    let set = &vf0["queue_set"];
    assert_eq!(set["function"], o.text("vf.bdf").trim(), "{set}");
    let queues = set["queues"].as_array().unwrap();
    assert!(!queues.is_empty(), "no queues in {set}");
    let interrupts = o.text("vf.interrupts");
    for q in queues {
        let irq = q["irq"].as_u64().unwrap();
        let name = q["name"].as_str().unwrap();
        let line = interrupts
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{irq}:")))
            .unwrap_or_else(|| panic!("IRQ {irq} not in /proc/interrupts:\n{interrupts}"));
        assert!(line.trim_end().ends_with(name), "{line} is not {name}");
        let kind = q["kind"].as_str().unwrap();
        assert!(
            name.ends_with(&format!("{kind}-{}", q["index"])),
            "{name} is not {kind} queue {}",
            q["index"]
        );
    }
    // igbvf has one rx and one tx queue, each with its own vector.
    let kinds: Vec<&str> = queues.iter().map(|q| q["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"rx") && kinds.contains(&"tx"), "{kinds:?}");
    assert!(
        o.text("vf-status-text.out").contains("queue sets"),
        "{}",
        o.text("vf-status-text.out")
    );

    // The ethtool binary meets the same refusals (its -N prints the error but exits 0).
    for f in ["oracle-context", "oracle-ntuple", "oracle-l2fwd"] {
        let t = o.text(&format!("{f}.out"));
        assert!(
            t.contains("Operation not supported") || t.contains("Could not change"),
            "{f}: ethtool succeeded?\n{t}"
        );
    }
}

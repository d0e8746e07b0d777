//! Issue 8.2 on the real igb/igbvf drivers (scenarios/faults.sh): kill -9 of `vportd apply`
//! at every journaled step of an apply from a clean host, from outside and from inside (the
//! fault-injection layer's SIGKILL right after each host write), and real-kernel
//! faults injected through VPORTD_FAULTS. After each: a rerun converges to what a clean apply
//! gives, nothing leaked (sriov_numvfs, every VF's attributes as `ip -d -j link show` reports
//! them, drivers), the state file is whole JSON, no journal is left, and a further apply is a
//! no-op. One guest boot for all rounds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

/// The scenario's files, unpacked from its tar.
struct Files(BTreeMap<String, String>);

impl Files {
    fn unpack(tar: &[u8]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("all.tar");
        std::fs::write(&archive, tar).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xf")
            .arg(&archive)
            .status()
            .expect("tar runs");
        assert!(status.success());
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p != archive {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                out.insert(name, std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
        Files(out)
    }

    #[track_caller]
    fn text(&self, name: &str) -> &str {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("the scenario wrote no {name}"))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn rc(&self, step: &str) -> i32 {
        self.text(&format!("{step}.rc")).trim().parse().unwrap()
    }

    fn out(&self, step: &str) -> String {
        format!(
            "{}{}",
            self.text(&format!("{step}.out")),
            self.text(&format!("{step}.err"))
        )
    }

    /// The host after a step: VF counts, every VF's attributes as ip reports them, drivers.
    fn host(&self, snap: &str) -> String {
        let mut s = format!("numvfs {}\n", self.text(&format!("{snap}.numvfs")).trim());
        for dev in ["eth0", "eth1"] {
            let links: Vec<Value> =
                serde_json::from_str(self.text(&format!("{snap}.{dev}.json"))).unwrap();
            for v in links[0]["vfinfo_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let vlan = v["vlan_list"]
                    .as_array()
                    .and_then(|l| l.first())
                    .map(|x| format!("{}/{}", x["vlan"], x["qos"]))
                    .unwrap_or_else(|| "0/0".into());
                s += &format!(
                    "{dev} vf {} mac {} vlan {vlan} rate {}-{} spoofchk {} trust {} link {}\n",
                    v["vf"],
                    v["address"].as_str().unwrap_or("-"),
                    v["rate"]["min_tx"],
                    v["rate"]["max_tx"],
                    v["spoofchk"],
                    v["trust"],
                    v["link_state"].as_str().unwrap_or("-")
                );
            }
        }
        s + self.text(&format!("{snap}.vfs"))
    }

    /// The vPorts of the state file after a step (which must be whole JSON).
    fn state_vports(&self, snap: &str) -> Value {
        let name = format!("{snap}.state.json");
        let v: Value = serde_json::from_str(self.text(&name))
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let mut vports = v["vports"].clone();
        // The reason says "keeps" or "free" by run; what is provisioned is the rest.
        for vp in vports.as_object_mut().unwrap().values_mut() {
            vp.as_object_mut().unwrap().remove("reason");
        }
        vports
    }
}

#[test]
fn provision_faults_and_kill_at_every_step_converge() {
    crate::stall_retry(
        "provision_faults_and_kill_at_every_step_converge",
        provision_faults_and_kill_at_every_step_converge_once,
    );
}

fn provision_faults_and_kill_at_every_step_converge_once() {
    let test = "provision_faults_and_kill_at_every_step_converge";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2).module("pci-stub"));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/faults.sh"),
        Duration::from_secs(600),
    )
    .success();
    let f = Files::unpack(&o.files["all.tar"]);

    // The reference: a clean apply from a clean host.
    assert_eq!(f.rc("ref"), 0, "{}", f.out("ref"));
    let reference = f.host("ref");
    let ref_state = f.state_vports("ref");
    assert!(reference.starts_with("numvfs 3 1\n"), "{reference}");
    assert_eq!(
        reference.matches(" pci-stub").count(),
        3,
        "pf0's VFs on pci-stub: {reference}"
    );
    assert!(
        reference.contains("eth0 vf 0 mac 02:00:00:00:08:10 vlan 10/1"),
        "{reference}"
    );
    assert_eq!(ref_state.as_object().unwrap().len(), 5);
    let steps: usize = f.text("steps").trim().parse().unwrap();
    assert!(steps >= 9, "the apply has {steps} journaled steps");

    // Every round: the rerun converges to the reference, nothing leaked, state whole, no
    // journal, and the next apply does nothing.
    let check = |round: &str| {
        // What the killed run left is whole JSON (or absent).
        for file in ["state", "journal"] {
            let name = format!("{round}.killed.{file}.json");
            if f.has(&name) {
                serde_json::from_str::<Value>(f.text(&name))
                    .unwrap_or_else(|e| panic!("{name} is torn: {e}"));
            }
        }
        let rerun = format!("{round}.rerun");
        assert_eq!(f.rc(&rerun), 0, "{rerun}: {}", f.out(&rerun));
        assert_eq!(f.host(&rerun), reference, "{rerun}: converged");
        assert_eq!(f.state_vports(&rerun), ref_state, "{rerun}: state");
        assert!(
            !f.has(&format!("{rerun}.journal.json")),
            "{rerun}: journal left"
        );
        let again = format!("{round}.again");
        assert!(
            f.out(&again).contains("nothing to do"),
            "{again}: {}",
            f.out(&again)
        );
        assert_eq!(f.host(&again), reference);
    };

    // kill -9 from outside at every step.
    let mut recovered = 0;
    for k in 1..=steps {
        let round = format!("ext{k}");
        let killed = f.text(&format!("{round}.killed.err"));
        assert!(killed.contains(&format!("[{k}/")), "{round}: {killed}");
        check(&round);
        if f.out(&format!("{round}.rerun")).contains("rolled back") {
            recovered += 1;
        }
    }
    // From inside: SIGKILL right after each host write.
    let mut writes = BTreeMap::new();
    for when in ["after"] {
        let mut k = 1;
        while f.has(&format!("w{k}{when}.rerun.rc")) {
            let round = format!("w{k}{when}");
            let killed = format!("{round}.killed");
            assert_eq!(f.rc(&killed), 137, "{killed}: killed by SIGKILL");
            // Announced under the operation that was the K-th write, e.g. "set_vf#2 kill after".
            let out = f.out(&killed);
            assert!(
                out.contains("injected fault: ") && out.contains(" kill after"),
                "{killed}: {out}"
            );
            check(&round);
            if f.out(&format!("{round}.rerun")).contains("rolled back") {
                recovered += 1;
            }
            k += 1;
        }
        writes.insert(when, k - 1);
        // The round after the last write completed the apply.
        assert_eq!(f.rc(&format!("w{k}{when}.killed")), 0);
    }
    // One write per step except the software vPort's record.
    assert_eq!(writes["after"], steps - 1, "{writes:?}");
    assert!(
        recovered >= steps,
        "most kills left a journal to roll back ({recovered})"
    );

    // Injected faults on the real kernel.
    let hit = |case: &str, what: &str| {
        assert!(
            f.out(case).contains(&format!("injected fault: {what}")),
            "{case}: {}",
            f.out(case)
        );
    };
    let rolled_back = |case: &str| {
        assert_eq!(f.rc(case), 1, "{case}: {}", f.out(case));
        assert!(
            f.out(case).contains("rolled back"),
            "{case}: {}",
            f.out(case)
        );
        assert_eq!(
            f.host(case),
            f.host(&format!("{case}.before")),
            "{case}: the host as it was"
        );
        assert!(!f.has(&format!("{case}.journal.json")), "{case}");
    };
    let converged = |case: &str| {
        let rerun = format!("{case}.rerun");
        assert_eq!(f.rc(&rerun), 0, "{rerun}: {}", f.out(&rerun));
        assert_eq!(f.host(&rerun), reference, "{rerun}");
        assert_eq!(f.state_vports(&rerun), ref_state, "{rerun}");
        assert!(f.out(&format!("{case}.again")).contains("nothing to do"));
    };
    // One EBUSY is retried and the change goes through (a0's VF reset).
    hit("busy_retried", "set_vf#2 EBUSY");
    assert_eq!(f.rc("busy_retried"), 0, "{}", f.out("busy_retried"));
    assert!(
        f.host("busy_retried")
            .contains("eth0 vf 0 mac 00:00:00:00:00:00 "),
        "{}",
        f.host("busy_retried")
    );
    converged("busy_retried");
    for (case, what) in [
        ("busy_exhausted", "set_vf#6 EBUSY"),
        ("vf_eio_after", "set_vf#3 EIO"),
        ("netlink_timeout", "vf_config#2 timeout"),
        ("bind_eio", "bind#2 EIO"),
        ("numvfs_timeout", "set_num_vfs#2 timeout"),
        ("numvfs_enospc", "set_num_vfs#2 ENOSPC"),
        ("create_timeout", "set_num_vfs#1 timeout"),
    ] {
        hit(case, what);
        rolled_back(case);
        converged(case);
    }
    assert!(
        f.out("numvfs_enospc")
            .contains("firmware reserved too little"),
        "the live error's hint: {}",
        f.out("numvfs_enospc")
    );
    assert!(f.host("create_timeout").starts_with("numvfs 0 0\n"));
}

//! vfio-pci behind a real (emulated) IOMMU (issue 20, point 3), in a guest with two NUMA
//! nodes (the same boot serves tests/vm/numa.rs's checks when run together): VFs bound to
//! vfio-pci by `apply`, IOMMU groups in `discover`, a VM-like holder named by `plan` and
//! refusing a resize, and `apply` returning in bounded time when the kernel's
//! `sriov_numvfs` write hangs on a holder it cannot see.

use std::time::Duration;

use serde_json::Value;

use crate::rig::{Guest, Rig, numa_pf_bdf, rig_or_skip};
use crate::{boot, run};

/// One boot for points 3 and 4: vfio on the node-0 PF, then tests/vm/numa.rs on both.
#[test]
fn vfio_and_numa_on_an_iommu_numa_guest() {
    crate::stall_retry(
        "vfio_and_numa_on_an_iommu_numa_guest",
        vfio_and_numa_on_an_iommu_numa_guest_once,
    );
}

fn function<'a>(discover: &'a Value, bdf: &str) -> &'a Value {
    discover["pci_functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["bdf"] == bdf)
        .unwrap_or_else(|| panic!("{bdf} not in discover"))
}

fn vfio_and_numa_on_an_iommu_numa_guest_once() {
    let test = "vfio_and_numa_on_an_iommu_numa_guest";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2).iommu_numa());
    vfio_groups_holders_and_a_bounded_resize(&mut guest, test);
    crate::numa::node_local_placement(&mut guest, test);
}

fn vfio_groups_holders_and_a_bounded_resize(guest: &mut Guest, test: &str) {
    let pf = numa_pf_bdf(0);
    let script = format!("set -- {pf}\n{}", include_str!("scenarios/vfio.sh"));
    let o = run(guest, test, &script, Duration::from_secs(600)).success();
    let rc = |s: &str| o.text(&format!("{s}.rc")).trim().parse::<i32>().unwrap();
    let ms = |s: &str| o.text(&format!("{s}.ms")).trim().parse::<u64>().unwrap();
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));
    let json = |s: &str| -> Value {
        serde_json::from_str(&o.text(s)).unwrap_or_else(|e| panic!("{s}: {e}"))
    };

    // apply binds the vPort's VF to vfio-pci (the spare VF keeps igbvf); each VF is in a
    // group of its own, and the bound one has its /dev/vfio node.
    assert_eq!(rc("apply"), 0, "{}", out("apply"));
    let vfs: Vec<Vec<String>> = o
        .text("apply.vfs")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(vfs.len(), 2, "{vfs:?}");
    let dev_vfio = o.text("dev-vfio.txt");
    assert_eq!(vfs[0][1], "vfio-pci", "{vfs:?}");
    assert!(dev_vfio.lines().any(|l| l == vfs[0][2]), "{dev_vfio}");
    assert_ne!(vfs[0][2], vfs[1][2], "one group per VF");

    // discover's iommu_group agrees with every function's sysfs link.
    let discover = json("discover.json");
    let groups = o.text("groups.txt");
    let mut seen = 0;
    for line in groups.lines() {
        let (bdf, group) = line.split_once(' ').unwrap();
        let f = discover["pci_functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["bdf"] == bdf);
        if let Some(f) = f {
            assert_eq!(f["iommu_group"].to_string(), group, "{bdf}");
            seen += 1;
        }
    }
    assert!(seen >= 4, "2 PFs and 2 VFs at least: {groups}");
    let sriov = &function(&discover, &pf)["sriov"]["vfs"];
    for (i, vf) in vfs.iter().enumerate() {
        assert_eq!(sriov[i]["bdf"], vf[0].as_str());
        assert_eq!(sriov[i]["iommu_group"].to_string(), vf[2]);
        assert!(sriov[i].get("vfio_holders").is_none(), "{sriov}");
    }

    // A holder as QEMU holds a VF: discover names it, plan and apply refuse the resize.
    let pid = o.text("holder-group.pid").trim().to_string();
    let held = json("discover-held.json");
    let holders = &function(&held, &pf)["sriov"]["vfs"][0]["vfio_holders"];
    assert_eq!(holders[0]["pid"].to_string(), pid, "{holders}");
    assert_eq!(holders[0]["command"], "perl", "{holders}");
    let who = format!("pid {pid} (perl)");
    assert!(out("plan").contains(&who), "{}", out("plan"));
    assert!(
        out("plan").contains(&format!("/dev/vfio/{}", vfs[0][2])),
        "{}",
        out("plan")
    );
    assert_ne!(rc("refused"), 0, "{}", out("refused"));
    assert!(out("refused").contains(&who), "{}", out("refused"));
    assert_eq!(o.text("refused.numvfs").trim(), "2", "nothing changed");

    // A holder that keeps only the device fd is invisible in /proc/*/fd as a group: the
    // write hangs in the kernel, and apply gives up after VPORTD_SRIOV_TIMEOUT=8 s.
    let hidden = o.text("hidden-fds.txt");
    assert!(hidden.contains("vfio-device"), "{hidden}");
    assert!(!hidden.contains("/dev/vfio/"), "{hidden}");
    assert_ne!(rc("stuck"), 0, "{}", out("stuck"));
    assert!(
        out("stuck").contains("had not returned after 8 s"),
        "{}",
        out("stuck")
    );
    eprintln!(
        "{test}: apply with a hung sriov_numvfs write returned in {} ms",
        ms("stuck")
    );
    assert!(ms("stuck") < 60_000, "{} ms", ms("stuck"));
    // Once the holder is gone the orphaned write finishes; a rerun converges.
    assert_eq!(rc("released"), 0);
    assert_eq!(rc("rerun"), 0, "{}", out("rerun"));
    let rerun = o.text("rerun.vfs");
    assert_eq!(rerun.lines().count(), 3, "{rerun}");
    assert!(
        rerun.lines().next().unwrap().contains(" vfio-pci "),
        "{rerun}"
    );
    assert_eq!(rc("again"), 0, "{}", out("again"));
    assert!(out("again").contains("nothing to do"), "{}", out("again"));
}

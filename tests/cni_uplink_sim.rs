//! CNI networks on an `uplink` on the simulated igb host: the daemon's decisions (which VF
//! of the uplink an ADD takes, what it sets on the PF, when the uplink is full, what DEL
//! and GC release) run against the state `vportd apply` wrote for the simulated host, and
//! the PF-side steps (`ConfigureVf`, `CleanVf`) run on the simulated PF. The netdev moves
//! into and out of the container are the pool path's (tests/vm/cni_pool.rs on igbvf).

use std::path::{Path, PathBuf};
use std::time::Duration;

use vportd::attach::book::{Book, Key, MacFrom, Request, Step, Target, UplinkRoom};
use vportd::daemon::cni::{soft_ports, uplink_room, vf_config};
use vportd::host::userfiles::UserFiles;
use vportd::model::mac::Mac;
use vportd::model::pool::VfAttributes;
use vportd::model::profile::ProfileSet;
use vportd::model::vf::VfConfig;
use vportd::provision;
use vportd::provision::apply::ApplyOptions;
use vportd::provision::config;
use vportd::provision::ops::SriovOps;
use vportd::provision::plan::PlanOptions;
use vportd::provision::sim_host::SimHost;
use vportd::provision::state::{ATTACHMENTS_FILE, State};
use vportd::softpath::plan::plan_with;

const PF: &str = "0000:01:00.0";

/// The simulated host after `vportd apply`: `num_vfs` VFs, VF 0 the switch's trunk, pool
/// ctr VFs 1 and 2, vPort a VF 3.
fn applied(dir: &Path, num_vfs: u32) -> SimHost {
    applied_with(dir, num_vfs, "").0
}

/// [`applied`] with `more` config text, and the config.
fn applied_with(dir: &Path, num_vfs: u32, more: &str) -> (SimHost, config::Config) {
    let text = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\nnum_vfs = {num_vfs}\nswitch_vf = 0\n\
         [[vport]]\nname = \"a\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:01\"\n\
         [[pool]]\nname = \"ctr\"\nuplink = \"{PF}\"\ncount = 2\n{more}",
        dir.display()
    );
    let cfg = config::parse(Path::new("host.toml"), &text).unwrap();
    let kept = cfg.clone();
    let opts = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: "r1".into(),
        store: &UserFiles,
    };
    let mut host = SimHost::igb(1);
    let inv = host.inventory();
    let mut rediscover = |h: &SimHost| h.inventory();
    provision::apply_config(
        &mut host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions::default(),
        &opts,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    (host, kept)
}

/// The room the daemon finds: the VFs the simulated PF has, the state's holders, and the
/// switch's trunk VF (up in the host, which is how the live daemon knows it).
fn room(dir: &Path, host: &SimHost) -> UplinkRoom {
    let state = State::load(&UserFiles, dir).unwrap();
    uplink_room(&state, PF, host.pfs[0].vfs.len() as u32, &[0])
}

fn req(c: &str, network: &str, last: u8, attrs: VfAttributes) -> Request {
    Request {
        key: Key {
            container_id: c.into(),
            ifname: "eth0".into(),
        },
        network: network.into(),
        netns: PathBuf::from(format!("/run/netns/{c}")),
        target: Target::Uplink(PF.into()),
        mac: Mac([2, 0, 0, 0, 7, last]),
        mac_from: MacFrom::Derived,
        attrs,
    }
}

/// Runs the PF-side steps on the simulated PF, as the daemon's host runs them live.
fn run_pf_steps(host: &mut SimHost, steps: &[Step]) {
    let ifx = host.pfs[0].ifindex;
    for s in steps {
        match s {
            Step::ConfigureVf { pf, vf, mac, attrs } => {
                assert_eq!(pf, PF);
                host.set_vf(ifx, &vf_config(*vf, *mac, attrs)).unwrap();
            }
            Step::CleanVf { vf, .. } => {
                host.set_vf(ifx, &vf_config(*vf, Mac::ZERO, &VfAttributes::default()))
                    .unwrap();
            }
            _ => {}
        }
    }
}

fn vf_taken(steps: &[Step]) -> u32 {
    match &steps[0] {
        Step::ConfigureVf { vf, .. } => *vf,
        other => panic!("a VF's steps start on the PF: {other:?}"),
    }
}

const NO_SOFT: &str = "the daemon runs no software switch for uplink 0000:01:00.0";

fn no_soft() -> Result<String, String> {
    Err(NO_SOFT.into())
}

#[test]
fn an_uplink_network_takes_the_spare_vfs_configures_them_and_is_full_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = applied(dir.path(), 6);
    let room = room(dir.path(), &host);
    assert_eq!(room.spare, [4, 5], "not the trunk, the pool's or vPort a's");
    assert_eq!(
        room.accounting,
        "6 VFs, 2 spare: 2 in pool ctr, 1 for vPorts, 1 up in the host (a switch trunk)"
    );
    let attrs = VfAttributes {
        vlan: Some(100),
        qos: Some(3),
        max_tx_rate_mbps: Some(200),
        spoofchk: Some(true),
        trust: Some(true),
        mtu: Some(1400),
        ..VfAttributes::default()
    };
    let book = Book::default();
    assert_eq!(book.uplink_status(&room, no_soft), Ok(2));

    // ADD: the lowest spare VF, configured on the PF, its netdev into the namespace.
    let (book, steps) = book
        .add_on_uplink(&room, || unreachable!(), &req("c1", "up", 1, attrs))
        .unwrap();
    assert_eq!(vf_taken(&steps), 4);
    assert!(matches!(
        &steps[1],
        Step::MoveVfIn { vf: 4, ifname, mtu: Some(1400), mac, netns, .. }
            if ifname == "eth0" && *mac == Mac([2, 0, 0, 0, 7, 1]) && netns == Path::new("/run/netns/c1")
    ));
    run_pf_steps(&mut host, &steps);
    let c = &host.pfs[0].vfs[4].config;
    assert_eq!(
        (c.mac, c.vlan, c.qos, c.max_tx_rate, c.spoofchk, c.trust),
        (
            Mac([2, 0, 0, 0, 7, 1]),
            100,
            3,
            Some(200),
            Some(true),
            Some(true)
        )
    );
    // The same ADD again (a retry): the same VF, no second one.
    let (again, _) = book
        .add_on_uplink(&room, || unreachable!(), &req("c1", "up", 1, attrs))
        .unwrap();
    assert_eq!(again, book);

    let (book, steps) = book
        .add_on_uplink(
            &room,
            || unreachable!(),
            &req("c2", "up", 2, VfAttributes::default()),
        )
        .unwrap();
    assert_eq!(vf_taken(&steps), 5);
    run_pf_steps(&mut host, &steps);

    // Full: ADD is refused naming why (11, try later) and STATUS answers 50; nothing changed.
    let e = book
        .add_on_uplink(&room, no_soft, &req("c3", "up", 3, attrs))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "uplink {PF} has no free VF (6 VFs, 2 spare: 2 in pool ctr, 1 for vPorts, 1 up in the host (a switch trunk); 2 held by attachments) and no software path for it: {NO_SOFT}"
        )
    );
    assert_eq!(e.to_cni().code(), 11);
    let s = book.uplink_status(&room, no_soft).unwrap_err();
    assert_eq!(s.code(), 50, "{s}");
    assert!(s.to_string().contains(NO_SOFT), "{s}");
    for i in [0, 1, 2] {
        assert_eq!(
            host.pfs[0].vfs[i].config.mac,
            VfConfig::clean(i as u32).mac,
            "VF {i} is not the uplink network's"
        );
    }
    assert_eq!(
        host.pfs[0].vfs[3].config.mac,
        Mac([2, 0, 0, 0, 1, 1]),
        "vPort a keeps its VF"
    );

    // DEL: the VF clean on the PF first, then home; then STATUS is fine and the next ADD
    // gets the freed VF.
    let key = Key {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    };
    let (book, steps) = book.del(&key);
    assert!(matches!(
        steps[..],
        [Step::CleanVf { vf: 4, .. }, Step::MoveVfBack { vf: 4, .. }]
    ));
    run_pf_steps(&mut host, &steps);
    let c = &host.pfs[0].vfs[4].config;
    assert_eq!(
        (c.mac, c.vlan, c.max_tx_rate, c.trust),
        (Mac::ZERO, 0, Some(0), Some(false))
    );
    let book = book.forget(&key);
    assert_eq!(book.del(&key).1, [], "a second DEL has nothing to do");
    assert_eq!(book.uplink_status(&room, no_soft), Ok(1));
    let (book, steps) = book
        .add_on_uplink(&room, || unreachable!(), &req("c3", "up", 3, attrs))
        .unwrap();
    assert_eq!(vf_taken(&steps), 4);

    // GC of the network keeping c3: c2's VF is released; another network's are not judged.
    let (book, releases) = book.gc("other", &[]);
    assert!(releases.is_empty());
    let keep = Key {
        container_id: "c3".into(),
        ifname: "eth0".into(),
    };
    let (book, releases) = book.gc("up", std::slice::from_ref(&keep));
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].key.container_id, "c2");
    assert!(matches!(releases[0].steps[0], Step::CleanVf { vf: 5, .. }));
    run_pf_steps(&mut host, &releases[0].steps);
    assert_eq!(host.pfs[0].vfs[5].config.mac, Mac::ZERO);
    let book = book.forget(&releases[0].key);
    assert_eq!(book.uplink_status(&room, no_soft), Ok(1));
}

#[test]
fn a_pool_network_and_an_uplink_network_on_one_pf_never_share_a_vf() {
    let dir = tempfile::tempdir().unwrap();
    let host = applied(dir.path(), 5);
    let room = room(dir.path(), &host);
    assert_eq!(room.spare, [4]);
    let pools = State::load(&UserFiles, dir.path()).unwrap().pools;
    let mut pool_req = req("p1", "pooled", 9, VfAttributes::default());
    pool_req.target = Target::Pool("ctr".into());
    let (book, steps) = Book::default().add(&pools, &pool_req).unwrap();
    assert_eq!(vf_taken(&steps), 1);
    let (book, steps) = book
        .add_on_uplink(
            &room,
            || unreachable!(),
            &req("u1", "up", 1, VfAttributes::default()),
        )
        .unwrap();
    assert_eq!(vf_taken(&steps), 4);
    // The one spare VF held: full, whatever the pool has left.
    assert_eq!(book.uplink_status(&room, no_soft).unwrap_err().code(), 50);
    assert_eq!(book.capacity(&pools[0]).free, 1);
    // A MAC already attached on the pool network is refused on the uplink network too.
    let mut dup = req("u2", "up", 9, VfAttributes::default());
    dup.mac = pool_req.mac;
    let room_more = UplinkRoom {
        spare: vec![4, 5],
        ..room.clone()
    };
    let e = book
        .add_on_uplink(&room_more, || unreachable!(), &dup)
        .unwrap_err();
    assert_eq!(e.to_cni().code(), 7, "{e}");
}

#[test]
fn no_vf_on_the_uplink_at_all_is_full_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let host = applied(dir.path(), 4);
    let room = room(dir.path(), &host);
    assert!(room.spare.is_empty(), "{room:?}");
    let e = Book::default().uplink_status(&room, no_soft).unwrap_err();
    assert_eq!(e.code(), 50);
    assert!(e.to_string().contains("4 VFs, 0 spare"), "{e}");
}

/// No VF free, and the uplink's external switch runs (vPort s is on the software path): the
/// attachment is a veth port on that switch, the reason recorded; the software path plans
/// the book's port on the external switch beside vPort s; without a running external
/// switch the same port is refused.
#[test]
fn a_full_uplink_falls_back_to_its_external_switch_with_the_reason_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let soft_vport = format!(
        "[[vport]]\nname = \"s\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:02\"\noffload = \"never\"\n"
    );
    let (host, cfg) = applied_with(dir.path(), 5, &soft_vport);
    let room = room(dir.path(), &host);
    assert_eq!(room.spare, [4]);
    let external = format!("sw-{PF}");
    let on_switch = || Ok::<_, String>(external.clone());
    let attrs = VfAttributes {
        vlan: Some(30),
        ..VfAttributes::default()
    };
    let (book, steps) = Book::default()
        .add_on_uplink(&room, on_switch, &req("c1", "up", 1, attrs))
        .unwrap();
    assert_eq!(vf_taken(&steps), 4, "a VF while one is free");
    let (book, steps) = book
        .add_on_uplink(&room, on_switch, &req("c2", "up", 2, attrs))
        .unwrap();
    assert!(
        matches!(&steps[..], [Step::CreateVeth { .. }, Step::AddSwitchPort { switch, .. }] if *switch == external),
        "{steps:?}"
    );
    let key2 = Key {
        container_id: "c2".into(),
        ifname: "eth0".into(),
    };
    let e = book.get(&key2).unwrap();
    assert_eq!(e.target, Target::Uplink(PF.into()));
    assert_eq!(
        e.reason.as_deref(),
        Some(
            "uplink 0000:01:00.0 has no free VF (5 VFs, 1 spare: 2 in pool ctr, 1 for vPorts, 1 up in the host (a switch trunk); 1 held by attachments): a port on its external switch sw-0000:01:00.0"
        )
    );
    assert_eq!(
        book.uplink_status(&room, on_switch),
        Ok(0),
        "the switch has room"
    );
    // The same ADD again is the same port.
    let (again, _) = book
        .add_on_uplink(&room, || unreachable!(), &req("c2", "up", 2, attrs))
        .unwrap();
    assert_eq!(again, book);

    // The software path serves the book's port on the uplink's external switch.
    std::fs::write(dir.path().join(ATTACHMENTS_FILE), book.to_json()).unwrap();
    let state = State::load(&UserFiles, dir.path()).unwrap();
    let extra = soft_ports(dir.path());
    assert_eq!(extra.len(), 1);
    let (plans, errors) = plan_with(&cfg, &state, &extra);
    assert!(errors.is_empty(), "{errors:?}");
    let sw = plans.iter().find(|p| p.name == external).unwrap();
    assert_eq!(sw.uplink, PF);
    let names: Vec<&str> = sw.ports.iter().map(|p| p.vport.as_str()).collect();
    assert_eq!(names, ["s", extra[0].port.vport.as_str()]);
    // Without vPort s no external switch runs: the port is refused, not served alone.
    let mut bare = state.clone();
    bare.vports.remove("s");
    let (plans, errors) = plan_with(&cfg, &bare, &extra);
    assert!(plans.iter().all(|p| p.name != external));
    assert_eq!(errors.len(), 1, "{errors:?}");

    // DEL: the port and its veth go.
    let (_, steps) = book.del(&key2);
    assert!(matches!(
        &steps[..],
        [Step::RemoveSwitchPort { .. }, Step::DeleteVeth { .. }]
    ));
}

/// An uplink attachment's VF, as `vportd apply` sees it through the book: a VF count change
/// under it is refused naming the container.
#[test]
fn apply_refuses_to_resize_the_vfs_under_an_uplink_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let host = applied(dir.path(), 6);
    let room = room(dir.path(), &host);
    let (book, _) = Book::default()
        .add_on_uplink(&room, no_soft, &req("c1", "up", 1, VfAttributes::default()))
        .unwrap();
    std::fs::write(dir.path().join(ATTACHMENTS_FILE), book.to_json()).unwrap();
    let state = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(
        state
            .pool_holders
            .get(&(PF.to_string(), 4))
            .map(String::as_str),
        Some("container c1's eth0")
    );
    let mut host = host;
    let text = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\nnum_vfs = 7\nswitch_vf = 0\n\
         [[vport]]\nname = \"a\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:01\"\n\
         [[pool]]\nname = \"ctr\"\nuplink = \"{PF}\"\ncount = 2\n",
        dir.path().display()
    );
    let cfg = config::parse(Path::new("host.toml"), &text).unwrap();
    let opts = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: "r2".into(),
        store: &UserFiles,
    };
    let inv = host.inventory();
    let mut rediscover = |h: &SimHost| h.inventory();
    let err = provision::apply_config(
        &mut host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions::default(),
        &opts,
        &mut |_, _, _, _| {},
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("destroys VF 4, which container c1's eth0 holds"),
        "{err}"
    );
    assert_eq!(host.pfs[0].vfs.len(), 6, "nothing changed");
}

/// tests/vm/cni_pool.rs's last step, on the simulated host: a pool shrunk from 2 to 1 (vm-a
/// keeps VF 2) leaves VF 1 spare for an uplink network.
#[test]
fn a_shrunk_pool_leaves_its_vf_spare_for_an_uplink_network() {
    let dir = tempfile::tempdir().unwrap();
    let text = |count: u32| {
        format!(
            "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\n\
             [[vport]]\nname = \"vm-a\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:0a:01\"\nvlan = 100\n\
             [[pool]]\nname = \"ctr\"\nuplink = \"{PF}\"\ncount = {count}\ndriver = \"igbvf\"\n",
            dir.path().display()
        )
    };
    let mut host = SimHost::igb(1);
    for (run, count) in [("r1", 2), ("r2", 1)] {
        let cfg = config::parse(Path::new("host.toml"), &text(count)).unwrap();
        let opts = ApplyOptions {
            state_dir: cfg.state_dir.clone(),
            retries: 3,
            retry_delay: Duration::ZERO,
            link_wait: Duration::from_secs(1),
            run_id: run.into(),
            store: &UserFiles,
        };
        let inv = host.inventory();
        let mut rediscover = |h: &SimHost| h.inventory();
        provision::apply_config(
            &mut host,
            cfg,
            inv,
            &mut rediscover,
            ProfileSet::builtin(),
            PlanOptions::default(),
            &opts,
            &mut |_, _, _, _| {},
        )
        .unwrap();
    }
    assert_eq!(host.pfs[0].vfs.len(), 3);
    let state = State::load(&UserFiles, dir.path()).unwrap();
    let room = uplink_room(&state, PF, 3, &[]);
    assert_eq!(room.spare, [1], "{room:?}");
}

//! Simulated hosts shaped after real NICs: which VFs, refusals and queue controls each has.

use super::{SimHost, SimPf, SimSteering};
use crate::model::queues::{Feature, QueueFacts, QueueFeatures, equal_table};

impl SimHost {
    /// An 82576-like host: PFs 0000:0N:00.0 with 7 VFs max, igb's refusals.
    pub fn igb(npfs: u32) -> Self {
        let pfs = (0..npfs)
            .map(|i| SimPf {
                bdf: format!("0000:{:02x}:00.0", i + 1),
                ifindex: 10 + i,
                vendor: 0x8086,
                device: 0x10c9,
                driver: "igb".into(),
                vf_driver: "igbvf".into(),
                total_vfs: 7,
                refuses: vec!["link_state", "min_rate", "802.1ad"],
                vfs: Vec::new(),
                // What the emulated 82576 reports without VFs (tests/vm/queues.rs): 4
                // combined channels of at most 8, a 128-entry table, ntuple and
                // l2-fwd-offload fixed off.
                queue_facts: Some(QueueFacts {
                    combined: Some(4),
                    combined_max: Some(8),
                    rss_table: Some(equal_table(128, 0, 4)),
                    features: QueueFeatures {
                        ntuple: Some(Feature {
                            active: false,
                            changeable: false,
                        }),
                        l2_fwd_offload: Some(Feature {
                            active: false,
                            changeable: false,
                        }),
                    },
                }),
                queue_refuses: Vec::new(),
                steer: SimSteering::default(),
                admin_up: true,
            })
            .collect();
        SimHost {
            pfs,
            ..Default::default()
        }
    }

    /// A ConnectX-6 (mlx5) host: 8 combined channels, ntuple filters on, RSS contexts.
    pub fn mlx5(npfs: u32) -> Self {
        let mut h = Self::igb(npfs);
        for p in &mut h.pfs {
            p.vendor = 0x15b3;
            p.device = 0x101d;
            p.driver = "mlx5_core".into();
            p.vf_driver = "mlx5_core".into();
            p.refuses.clear();
            p.total_vfs = 8;
            p.steer.max_contexts = 32;
            if let Some(f) = p.queue_facts.as_mut() {
                f.combined = Some(8);
                f.combined_max = Some(8);
                f.rss_table = Some(equal_table(128, 0, 8));
                f.features.ntuple = Some(Feature {
                    active: true,
                    changeable: true,
                });
            }
        }
        h
    }

    /// An 82599 (ixgbe) host: l2-fwd-offload off but changeable, ntuple (Flow Director)
    /// changeable, no RSS contexts.
    pub fn ixgbe(npfs: u32) -> Self {
        let mut h = Self::igb(npfs);
        for p in &mut h.pfs {
            p.device = 0x10fb;
            p.driver = "ixgbe".into();
            p.vf_driver = "ixgbevf".into();
            p.refuses = vec!["link_state"];
            p.total_vfs = 63;
            if let Some(f) = p.queue_facts.as_mut() {
                f.combined = Some(8);
                f.combined_max = Some(63);
                f.rss_table = Some(equal_table(128, 0, 8));
                let changeable = Some(Feature {
                    active: false,
                    changeable: true,
                });
                f.features.ntuple = changeable;
                f.features.l2_fwd_offload = changeable;
            }
        }
        h
    }
}

//! Each table's keys in the order the README documents them, with what each takes: the text
//! of unknown-key and wrong-type hints.

pub(super) const TOP_KEYS: &[(&str, &str)] = &[
    (
        "state_dir",
        "an absolute directory path, e.g. \"/var/lib/vportd\"",
    ),
    ("uplink", "[[uplink]] tables, one per PF"),
    ("vport", "[[vport]] tables, one per vPort"),
    (
        "switch",
        "[[switch]] tables, one per private or internal software switch",
    ),
    (
        "pool",
        "[[pool]] tables, one per pool of VFs for containers",
    ),
    ("daemon", "a [daemon] table of vportd daemon's settings"),
];

pub(super) const DAEMON_KEYS: &[(&str, &str)] = &[
    ("period_ms", "milliseconds from 10 to 600000, e.g. 1000"),
    (
        "metrics",
        "an address and port in quotes, e.g. \"127.0.0.1:9477\", or \"off\"",
    ),
    (
        "socket",
        "an absolute path in quotes, e.g. \"/run/vportd/vportd.sock\", or \"off\"",
    ),
    ("socket_group", "a group name in quotes, e.g. \"vportd\""),
    ("uevents", "true or false"),
    (
        "nic_cpus",
        "a table of PCI addresses to CPU lists, e.g. { \"0000:01:00.0\" = \"2-7\" }",
    ),
    ("avoid_cpus", "a CPU list in quotes, e.g. \"0-3,16-19\""),
    ("steering", "true or false"),
    ("upper", "a share of a CPU, e.g. 0.8"),
    ("lower", "a share of a CPU, e.g. 0.3"),
    ("log_level", "\"error\", \"warn\", \"info\" or \"debug\""),
];

pub(super) const SWITCH_KEYS: &[(&str, &str)] = &[
    ("name", "a name such as \"lab\""),
    (
        "host_netdev",
        "the name of the host's own interface on the switch, e.g. \"vsw-lab\"",
    ),
];

pub(super) const UPLINK_KEYS: &[(&str, &str)] = &[
    ("pci", "the PF's PCI address, e.g. \"0000:01:00.0\""),
    ("mac", "the PF's MAC address, e.g. \"52:54:00:12:34:56\""),
    ("ifname", "the PF's interface name, e.g. \"eth0\""),
    ("num_vfs", "a whole number of VFs, e.g. 7"),
    ("vf_driver", "a driver name, e.g. \"vfio-pci\""),
    ("channels", "a whole number of combined channels, e.g. 4"),
    ("rss", "\"equal\""),
    (
        "rss_weights",
        "a list of whole numbers, one per queue, e.g. [1, 1, 2]",
    ),
    ("switch_edge", "\"af_packet\", \"af_xdp\" or \"auto\""),
    (
        "switch_vf",
        "the index of the VF the software switch trunks through, e.g. 0",
    ),
    ("bring_up", "true or false"),
];

pub(super) const VPORT_KEYS: &[(&str, &str)] = &[
    ("name", "a name such as \"vm1-eth0\""),
    (
        "uplink",
        "the pci, mac or ifname of an [[uplink]], in quotes",
    ),
    ("mac", "a unicast MAC address, e.g. \"02:00:00:00:01:01\""),
    ("vlan", "a VLAN id from 1 to 4094"),
    ("qos", "a priority from 0 to 7"),
    ("proto", "\"802.1Q\" or \"802.1ad\""),
    ("max_tx_rate_mbps", "a whole number of Mbit/s"),
    ("min_tx_rate_mbps", "a whole number of Mbit/s"),
    ("spoofchk", "true or false"),
    ("trust", "true or false"),
    ("link_state", "\"auto\", \"enable\" or \"disable\""),
    ("offload", "\"required\", \"preferred\" or \"never\""),
    (
        "optional",
        "a list of attributes the NIC may lack, e.g. [\"link_state\"]",
    ),
    ("queues", "a whole number of hardware queues, e.g. 2"),
    ("placement", "\"vf\", \"queues\" or \"software\""),
    (
        "cpus",
        "a CPU list for the vPort's queue interrupts, e.g. \"2-5,8\"",
    ),
    (
        "tap_owner",
        "the user a VM runs as, allowed to open the vPort's TAP, e.g. \"libvirt-qemu\"",
    ),
    (
        "tap_group",
        "the group allowed to open the vPort's TAP, e.g. \"kvm\"",
    ),
    ("switch", "the name of a [[switch]], in quotes"),
    ("attach", "\"tap\" (a VM's) or \"veth\" (a container's)"),
    (
        "netns",
        "a network namespace name or path, e.g. \"ctr1\" or \"/proc/1234/ns/net\"",
    ),
    (
        "ifname",
        "the interface name inside the namespace, e.g. \"eth0\"",
    ),
];

pub(super) const POOL_KEYS: &[(&str, &str)] = &[
    ("name", "a name such as \"ctr-vfs\""),
    (
        "uplink",
        "the pci or mac of an [[uplink]], in quotes, e.g. \"0000:01:00.0\"",
    ),
    ("count", "a whole number of VFs, e.g. 2"),
    ("driver", "a netdev driver name, e.g. \"igbvf\""),
    ("vlan", "a VLAN id from 1 to 4094"),
    ("qos", "a priority from 0 to 7"),
    ("max_tx_rate_mbps", "a whole number of Mbit/s"),
    ("min_tx_rate_mbps", "a whole number of Mbit/s"),
    ("spoofchk", "true or false"),
    ("trust", "true or false"),
    ("mtu", "a whole number of bytes, e.g. 1500"),
];

/// Attributes a vPort may list in `optional`: if the NIC cannot set one, it is dropped
/// with a warning instead of sending the vPort to the software path.
pub const OPTIONAL_ATTRIBUTES: &[&str] = &[
    "link_state",
    "proto",
    "min_tx_rate_mbps",
    "max_tx_rate_mbps",
    "trust",
    "spoofchk",
];

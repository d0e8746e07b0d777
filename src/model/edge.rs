//! The kind of kernel edge the software switch opens on a netdev.

/// Which kernel edge to open on an existing netdev (config: `edge = "af_packet"`,
/// `"af_xdp"` or `"auto"`). Auto takes AF_XDP where the kernel allows it on that netdev and
/// AF_PACKET elsewhere; the default is AF_PACKET, because only it carries GSO super-packets
/// (the virtio-net header), which bulk TCP over veth depends on (docs in host::afxdp). Plain
/// data, since the provisioning config names it per uplink and the switch opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetdevEdge {
    #[default]
    AfPacket,
    AfXdp,
    Auto,
}

impl NetdevEdge {
    pub const NAMES: &'static str = "\"af_packet\", \"af_xdp\" or \"auto\"";

    pub fn as_str(self) -> &'static str {
        match self {
            NetdevEdge::AfPacket => "af_packet",
            NetdevEdge::AfXdp => "af_xdp",
            NetdevEdge::Auto => "auto",
        }
    }
}

impl std::str::FromStr for NetdevEdge {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "af_packet" => Ok(NetdevEdge::AfPacket),
            "af_xdp" => Ok(NetdevEdge::AfXdp),
            "auto" => Ok(NetdevEdge::Auto),
            _ => Err(format!("edge \"{s}\" is not one of {}", NetdevEdge::NAMES)),
        }
    }
}

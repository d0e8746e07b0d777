//! The result JSON of ADD (and the `prevResult` CHECK and DEL get back), and the reading
//! of an IPAM plugin's answer into it. Fields new in 1.1.0 (an interface's `mtu`,
//! `socketPath` and `pciID`, a route's `mtu`, `advmss`, `priority`, `table`, `scope`) are
//! dropped when the caller speaks 1.0.0, so the answer is one its version defines.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::error::CniError;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// An interface the plugin made or moved; `sandbox` set for the container's own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// The VF's PCI address, for a VF (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An address given to an interface (`interface`: its index in `interfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// CIDR: `10.88.7.9/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// Reads a result (an IPAM plugin's answer, or a `prevResult`), checking what the
    /// spec makes mandatory: CIDR addresses, IP gateways and route destinations, interface
    /// indexes that exist. `what` names the source in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<CniResult, CniError> {
        let decode = |problem: String| CniError::Decode {
            what: what.to_string(),
            problem,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| decode(e.to_string()))?;
        if !value.is_object() {
            return Err(decode("it is not a JSON object".into()));
        }
        let r: CniResult = serde_json::from_value(value).map_err(|e| decode(e.to_string()))?;
        r.check(what)?;
        Ok(r)
    }

    fn check(&self, what: &str) -> Result<(), CniError> {
        let wrong = |problem: String| CniError::Decode {
            what: what.to_string(),
            problem,
        };
        for ip in &self.ips {
            if parse_cidr(&ip.address).is_none() {
                return Err(wrong(format!("address {:?} is not IP/prefix", ip.address)));
            }
            if let Some(gw) = &ip.gateway
                && gw.parse::<IpAddr>().is_err()
            {
                return Err(wrong(format!("gateway {gw:?} is not an IP address")));
            }
            if let Some(i) = ip.interface
                && i >= self.interfaces.len()
                && !self.interfaces.is_empty()
            {
                return Err(wrong(format!(
                    "address {} names interface {i}, which is not listed",
                    ip.address
                )));
            }
        }
        for r in &self.routes {
            if parse_cidr(&r.dst).is_none() {
                return Err(wrong(format!("route dst {:?} is not IP/prefix", r.dst)));
            }
            if let Some(gw) = &r.gw
                && gw.parse::<IpAddr>().is_err()
            {
                return Err(wrong(format!("route gw {gw:?} is not an IP address")));
            }
        }
        Ok(())
    }

    /// The plugin's answer to ADD: its interface (index 0) and an IPAM plugin's addresses,
    /// routes and DNS (the config's `dns` where IPAM gave none), in the caller's version.
    pub fn for_attachment(
        version: &str,
        iface: Interface,
        ipam: Option<CniResult>,
        conf_dns: Option<Dns>,
    ) -> CniResult {
        Self::for_interfaces(version, vec![iface], ipam, conf_dns)
    }

    /// [`CniResult::for_attachment`] with more interfaces (a veth's host end before the
    /// container's): IPAM's addresses go on the last, the container's.
    pub fn for_interfaces(
        version: &str,
        interfaces: Vec<Interface>,
        ipam: Option<CniResult>,
        conf_dns: Option<Dns>,
    ) -> CniResult {
        let ipam = ipam.unwrap_or_default();
        let inside = interfaces.len().saturating_sub(1);
        let ips = ipam
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                interface: Some(inside),
                ..ip
            })
            .collect();
        let dns = if ipam.dns.is_empty() {
            conf_dns.unwrap_or_default()
        } else {
            ipam.dns
        };
        CniResult {
            cni_version: version.to_string(),
            interfaces,
            ips,
            routes: ipam.routes,
            dns,
        }
        .in_version(version)
    }

    /// The same result as `version` defines it: 1.0.0 has no 1.1.0 fields.
    pub fn in_version(mut self, version: &str) -> CniResult {
        self.cni_version = version.to_string();
        if version == "1.0.0" {
            for i in &mut self.interfaces {
                i.mtu = None;
                i.socket_path = None;
                i.pci_id = None;
            }
            for r in &mut self.routes {
                *r = Route {
                    dst: std::mem::take(&mut r.dst),
                    gw: r.gw.take(),
                    ..Route::default()
                };
            }
        }
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a result always serializes")
    }
}

/// `addr/prefix` with a prefix that fits the address family.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_LOCAL: &str = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.88.7.9/24","gateway":"10.88.7.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

    fn vf_iface() -> Interface {
        Interface {
            name: "eth0".into(),
            mac: Some("02:00:00:00:00:01".into()),
            mtu: Some(1500),
            sandbox: Some("/run/netns/c1".into()),
            socket_path: None,
            pci_id: Some("0000:01:10.0".into()),
        }
    }

    #[test]
    fn an_add_result_joins_the_interface_and_ipams_addresses() {
        let ipam = CniResult::parse(HOST_LOCAL.as_bytes(), "host-local's answer").unwrap();
        let r = CniResult::for_attachment("1.1.0", vf_iface(), Some(ipam.clone()), None);
        assert_eq!(
            r.to_json(),
            r#"{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","mtu":1500,"sandbox":"/run/netns/c1","pciID":"0000:01:10.0"}],"ips":[{"interface":0,"address":"10.88.7.9/24","gateway":"10.88.7.1"}],"routes":[{"dst":"0.0.0.0/0"}]}"#
        );
        // 1.0.0 has no pciID or interface mtu.
        let dns = Dns {
            nameservers: vec!["10.88.7.1".into()],
            ..Dns::default()
        };
        let r = CniResult::for_attachment("1.0.0", vf_iface(), Some(ipam), Some(dns));
        assert_eq!(
            r.to_json(),
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/run/netns/c1"}],"ips":[{"interface":0,"address":"10.88.7.9/24","gateway":"10.88.7.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.88.7.1"]}}"#
        );
        // No IPAM: the interface alone.
        let r = CniResult::for_attachment("1.1.0", vf_iface(), None, None);
        assert!(r.ips.is_empty() && r.routes.is_empty() && r.dns.is_empty());
    }

    #[test]
    fn a_result_reads_back_what_it_wrote() {
        let ipam = CniResult::parse(HOST_LOCAL.as_bytes(), "x").unwrap();
        let r = CniResult::for_attachment("1.1.0", vf_iface(), Some(ipam), None);
        assert_eq!(CniResult::parse(r.to_json().as_bytes(), "x").unwrap(), r);
    }

    #[test]
    fn bad_results_are_refused_with_code_6() {
        let cases = [
            (
                "[]",
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the IPAM answer cannot be read: it is not a JSON object"}"#,
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#,
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the IPAM answer cannot be read: address \"10.0.0.1\" is not IP/prefix"}"#,
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]}"#,
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the IPAM answer cannot be read: address \"10.0.0.1/33\" is not IP/prefix"}"#,
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","gateway":"x"}]}"#,
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the IPAM answer cannot be read: gateway \"x\" is not an IP address"}"#,
            ),
            (
                r#"{"cniVersion":"1.0.0","routes":[{"dst":"default"}]}"#,
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the IPAM answer cannot be read: route dst \"default\" is not IP/prefix"}"#,
            ),
        ];
        for (input, want) in cases {
            let e = CniResult::parse(input.as_bytes(), "the IPAM answer").unwrap_err();
            assert_eq!(e.to_json("1.1.0"), want, "{input}");
        }
    }
}

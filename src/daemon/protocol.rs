//! The control protocol between the CLI (`vportd ctl`, `vportd hotplug`) and the daemon:
//! one JSON object per line over a Unix stream socket, one request then one response per
//! connection.
//!
//! ```text
//! -> {"v":1,"op":"reconcile","device":{"action":"add","subsystem":"pci","pci":"0000:02:00.0"}}
//! <- {"v":1,"reply":"queued","pci":"0000:02:00.0"}
//! ```
//!
//! Every message carries the protocol version `v`; a peer speaking another version gets a
//! `version` error instead of a guess. Decoding is strict, because the socket is a trust
//! boundary even with peer credentials checked: a size limit before parsing, unknown fields
//! refused, device events re-validated with the same rules as udev's environment
//! ([`crate::daemon::events`]). Pure encode/decode, no I/O (the socket is in
//! `host::unix_socket`), so it can be fuzzed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::daemon::events::{Bdf, DeviceEvent, HotplugError};

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;
/// The largest request line, newline included: the socket's read bound, kept with it.
use crate::host::unix_socket::MAX_REQUEST_LEN;
/// The largest response line: a status or plan of a big host, with room to spare.
pub const MAX_RESPONSE_LEN: usize = 8 * 1024 * 1024;

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The message exceeds the limit for its direction.
    #[error("the message is longer than the {limit} bytes accepted")]
    TooLong { limit: usize },
    /// The message is not one line of JSON.
    #[error("the message is not one JSON object on one line: {0}")]
    NotJson(String),
    /// The message has no `v` field.
    #[error("the message carries no protocol version (\"v\")")]
    NoVersion,
    /// The peer speaks another protocol version.
    #[error(
        "the peer speaks protocol version {got}, this vportd speaks {VERSION}; run the same vportd version on both sides"
    )]
    Version { got: u64 },
    /// The JSON is well formed but is not a request or response of this version.
    #[error("the message is not a valid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// A device event in a reconcile request breaks the event rules.
    #[error("the device event is refused: {0}")]
    Device(#[from] HotplugError),
}

/// What a client asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Each vPort's placement, health and drift (`vportd status --json`).
    Status {},
    /// The plan for the daemon's config against the host now, without applying it.
    Plan {
        #[serde(default)]
        allow_disruption: bool,
    },
    /// Apply the daemon's config now and answer with the report.
    Apply {
        #[serde(default)]
        allow_disruption: bool,
    },
    /// A device appeared, went or changed: reconcile it. Answered at once, before the
    /// reconcile runs (udev kills slow handlers).
    Reconcile { device: DeviceEvent },
    /// Turn the IRQ rebalancer on or off.
    Rebalance { enabled: bool },
    /// CNI ADD: attach the container's interface (the plugin checked the network config).
    CniAdd { call: CniCall },
    /// CNI DEL: free what the attachment holds; an unknown one is already free.
    CniDel { call: CniCall },
    /// CNI CHECK: the record against the kernel.
    CniCheck { call: CniCall },
    /// CNI GC: free every attachment of `network` not in `valid`.
    CniGc { network: String, valid: Vec<CniKey> },
    /// CNI STATUS: whether `target` can take an ADD now.
    CniStatus { network: String, target: CniTarget },
}

/// The spec's key of an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniKey {
    pub container_id: String,
    pub ifname: String,
}

/// Where a network's attachments go, as its config names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CniTarget {
    Pool(String),
    Switch(String),
    Uplink(String),
}

/// Where an attachment's MAC came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MacSource {
    Runtime,
    Args,
    Derived,
}

/// One ADD, DEL or CHECK as the plugin forwards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniCall {
    pub key: CniKey,
    pub network: String,
    /// `CNI_NETNS`; DEL may come without it.
    #[serde(default)]
    pub netns: Option<String>,
    pub target: CniTarget,
    pub mac: crate::model::mac::Mac,
    pub mac_from: MacSource,
    #[serde(default)]
    pub attrs: crate::model::pool::VfAttributes,
}

/// What the daemon did for an ADD: the container's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniAttached {
    pub ifname: String,
    pub mac: crate::model::mac::Mac,
    pub sandbox: String,
    /// The VF's PCI address.
    #[serde(default)]
    pub pci_id: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The link's ifindex inside the namespace, where the plugin puts IPAM's addresses.
    #[serde(default)]
    pub ifindex: Option<u32>,
    /// A veth's end in the host (a switch network's port), for the result's interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<CniHostEnd>,
}

/// The host's end of a container's veth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniHostEnd {
    pub name: String,
    pub mac: crate::model::mac::Mac,
}

/// Error classes, so that clients can act without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The request could not be decoded.
    BadRequest,
    /// The peer speaks another protocol version.
    Version,
    /// The peer's credentials do not allow it.
    Forbidden,
    /// The daemon cannot take the request now (queue full, shutting down).
    Busy,
    /// The request was understood but failed (config error, apply failure).
    Failed,
    /// This daemon does not offer the operation (e.g. no rebalancer).
    Unsupported,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    /// The vPorts' status, as `vportd status --json` prints it.
    Status { vports: Value },
    /// The plan, as `vportd plan --json` prints it.
    Plan { plan: Value },
    /// The apply's plan and report, as `vportd apply --json` prints them.
    Applied { result: Value },
    /// The reconcile of this device is queued.
    Queued { pci: Bdf },
    /// The rebalancer's state after the request.
    Rebalance { enabled: bool },
    /// A CNI call succeeded; ADD answers the interface it made.
    CniDone {
        #[serde(default)]
        attached: Option<CniAttached>,
    },
    /// A CNI call failed, with the spec's code.
    CniError {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    },
    /// The request failed.
    Error { code: ErrorCode, message: String },
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// One request as a line of JSON, newline included.
pub fn encode_request(req: &Request) -> Vec<u8> {
    encode(req)
}

/// One response as a line of JSON, newline included.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    encode(resp)
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // `v` first, for people reading a capture: the message is an object (tagged enums),
    // so splice it in after the opening brace.
    let body = serde_json::to_vec(msg).expect("protocol types always serialize");
    let mut out = format!("{{\"v\":{VERSION}").into_bytes();
    match body.as_slice() {
        [b'{', b'}'] => out.push(b'}'),
        [b'{', rest @ ..] => {
            out.push(b',');
            out.extend_from_slice(rest);
        }
        _ => unreachable!("protocol messages are JSON objects"),
    }
    out.push(b'\n');
    out
}

/// Decodes one request line (with or without its newline), validating everything.
pub fn decode_request(line: &[u8]) -> Result<Request, ControlError> {
    let req: Request = decode(line, MAX_REQUEST_LEN, "request")?;
    if let Request::Reconcile { device } = &req {
        device.validate()?;
    }
    Ok(req)
}

/// Decodes one response line (with or without its newline).
pub fn decode_response(line: &[u8]) -> Result<Response, ControlError> {
    decode(line, MAX_RESPONSE_LEN, "response")
}

fn decode<T: serde::de::DeserializeOwned>(
    line: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, ControlError> {
    if line.len() > limit {
        return Err(ControlError::TooLong { limit });
    }
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.contains(&b'\n') {
        return Err(ControlError::NotJson("it spans several lines".into()));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ControlError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(ControlError::NotJson("it is not an object".into()));
    };
    match map.remove("v") {
        None => return Err(ControlError::NoVersion),
        Some(v) => match v.as_u64() {
            Some(VERSION) => {}
            Some(got) => return Err(ControlError::Version { got }),
            None => {
                return Err(ControlError::Invalid {
                    what,
                    why: "\"v\" is not a number".into(),
                });
            }
        },
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| ControlError::Invalid {
        what,
        why: e.to_string(),
    })
}

/// The error response for a request that could not be decoded.
pub fn refusal(e: &ControlError) -> Response {
    let code = match e {
        ControlError::Version { .. } => ErrorCode::Version,
        _ => ErrorCode::BadRequest,
    };
    Response::error(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::events::{Action, Subsystem};

    fn device() -> DeviceEvent {
        DeviceEvent {
            action: Action::Add,
            subsystem: Subsystem::Net,
            pci: "0000:02:00.0".parse().unwrap(),
            ifindex: Some(5),
            interface: Some("eth1".into()),
            driver: None,
            seqnum: Some(7),
        }
    }

    #[test]
    fn requests_round_trip() {
        for req in [
            Request::Status {},
            Request::Plan {
                allow_disruption: true,
            },
            Request::Apply {
                allow_disruption: false,
            },
            Request::Reconcile { device: device() },
            Request::Rebalance { enabled: false },
            Request::CniAdd {
                call: CniCall {
                    key: CniKey {
                        container_id: "c1".into(),
                        ifname: "eth0".into(),
                    },
                    network: "n".into(),
                    netns: Some("/run/netns/c1".into()),
                    target: CniTarget::Pool("ctr".into()),
                    mac: "02:00:00:00:00:01".parse().unwrap(),
                    mac_from: MacSource::Derived,
                    attrs: crate::model::pool::VfAttributes {
                        vlan: Some(100),
                        ..Default::default()
                    },
                },
            },
            Request::CniGc {
                network: "n".into(),
                valid: vec![CniKey {
                    container_id: "c2".into(),
                    ifname: "eth0".into(),
                }],
            },
            Request::CniStatus {
                network: "n".into(),
                target: CniTarget::Switch("sw".into()),
            },
        ] {
            let line = encode_request(&req);
            assert!(line.ends_with(b"\n") && line.starts_with(b"{\"v\":1,"));
            assert_eq!(decode_request(&line).unwrap(), req);
        }
    }

    #[test]
    fn responses_round_trip() {
        for resp in [
            Response::Status {
                vports: serde_json::json!([{"vport": "vm-a", "health": "lost"}]),
            },
            Response::Plan {
                plan: serde_json::json!({"actions": []}),
            },
            Response::Applied {
                result: serde_json::json!({"report": {"noop": true}}),
            },
            Response::Queued {
                pci: "0000:02:00.0".parse().unwrap(),
            },
            Response::Rebalance { enabled: true },
            Response::CniDone {
                attached: Some(CniAttached {
                    ifname: "eth0".into(),
                    mac: "02:00:00:00:00:01".parse().unwrap(),
                    sandbox: "/run/netns/c1".into(),
                    pci_id: Some("0000:01:10.0".into()),
                    mtu: None,
                    ifindex: Some(3),
                    host: None,
                }),
            },
            Response::CniError {
                code: 11,
                msg: "pool ctr has no free VF".into(),
                details: String::new(),
            },
            Response::error(ErrorCode::Forbidden, "uid 65534 is not allowed"),
        ] {
            assert_eq!(decode_response(&encode_response(&resp)).unwrap(), resp);
        }
    }

    #[test]
    fn the_documented_example() {
        let req = br#"{"v":1,"op":"reconcile","device":{"action":"add","subsystem":"pci","pci":"0000:02:00.0"}}"#;
        let Request::Reconcile { device } = decode_request(req).unwrap() else {
            panic!("a reconcile request");
        };
        assert_eq!(device.pci.to_string(), "0000:02:00.0");
        let resp = Response::Queued { pci: device.pci };
        assert_eq!(
            encode_response(&resp),
            b"{\"v\":1,\"reply\":\"queued\",\"pci\":\"0000:02:00.0\"}\n"
        );
    }

    #[test]
    fn rejections() {
        let long = format!(
            "{{\"v\":1,\"op\":\"status\",\"pad\":\"{}\"}}",
            "x".repeat(MAX_REQUEST_LEN)
        );
        let cases: Vec<(&[u8], &str)> = vec![
            (long.as_bytes(), "longer than the 16384 bytes"),
            (b"", "not one JSON object"),
            (b"[1,2]", "not an object"),
            (b"{\"op\":\"status\"}", "no protocol version"),
            (b"{\"v\":2,\"op\":\"status\"}", "protocol version 2"),
            (b"{\"v\":\"1\",\"op\":\"status\"}", "\"v\" is not a number"),
            (b"{\"v\":1,\"op\":\"format-disk\"}", "not a valid request"),
            (b"{\"v\":1}", "not a valid request"),
            (b"{\"v\":1,\"op\":\"status\",\"x\":1}", "not a valid request"),
            (b"{\"v\":1,\"op\":\"plan\",\"x\":1}", "not a valid request"),
            (
                b"{\"v\":1,\"op\":\"rebalance\",\"enabled\":\"yes\"}",
                "not a valid request",
            ),
            (
                b"{\"v\":1,\"op\":\"status\"}\n{\"v\":1,\"op\":\"apply\"}",
                "several lines",
            ),
            (
                br#"{"v":1,"op":"reconcile","device":{"action":"add","subsystem":"pci","pci":"../../etc"}}"#,
                "not a valid request",
            ),
            (
                br#"{"v":1,"op":"reconcile","device":{"action":"add","subsystem":"usb","pci":"0000:02:00.0"}}"#,
                "not a valid request",
            ),
            (
                br#"{"v":1,"op":"reconcile","device":{"action":"add","subsystem":"net","pci":"0000:02:00.0","interface":"a/b"}}"#,
                "device event is refused",
            ),
            (
                br#"{"v":1,"op":"reconcile","device":{"action":"add","subsystem":"net","pci":"0000:02:00.0","ifindex":0}}"#,
                "device event is refused",
            ),
        ];
        for (line, want) in cases {
            let err = decode_request(line).expect_err(want).to_string();
            assert!(
                err.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            );
        }
        assert_eq!(
            refusal(&decode_request(b"{\"v\":9,\"op\":\"status\"}").unwrap_err()),
            Response::error(
                ErrorCode::Version,
                "the peer speaks protocol version 9, this vportd speaks 1; run the same vportd version on both sides"
            )
        );
    }

    proptest::proptest! {
        /// Whatever bytes arrive, decoding answers Ok or Err and never panics.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }
    }
}

//! The CNI error: every way a call can fail, each with the spec's code, so that the
//! runtime (and the person reading its log) learns what to fix.

use serde::Serialize;

/// A failed CNI call. `msg` is the variant's sentence; `details` says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CniError {
    /// Code 1: the config's `cniVersion` is not one this plugin speaks.
    #[error("cniVersion {asked:?} is not supported; this plugin speaks 1.0.0 and 1.1.0")]
    IncompatibleVersion { asked: String },
    /// Code 2: a field this plugin knows of but does not support (`CNI_ARGS` keys).
    #[error("{field} {value:?} is not supported")]
    UnsupportedField { field: String, value: String },
    /// Code 4: a variable the verb needs is missing or malformed.
    #[error("{var} {problem}")]
    BadEnv { var: &'static str, problem: String },
    /// Code 5: reading stdin or running a delegated plugin failed.
    #[error("{what}")]
    Io { what: String },
    /// Code 6: stdin (or a delegated plugin's answer) is not the JSON it must be.
    #[error("{what} cannot be read: {problem}")]
    Decode { what: String, problem: String },
    /// Code 7: the network config is readable but wrong; names the key.
    #[error("network config key {key:?}: {problem}")]
    InvalidConfig {
        key: String,
        problem: String,
        hint: String,
    },
    /// Code 11: the daemon that owns the allocations cannot answer now.
    #[error("{why}")]
    TryAgainLater { why: String },
    /// Code 50: STATUS: this network cannot take an ADD now.
    #[error("{why}")]
    NotAvailable { why: String },
    /// A delegated plugin's (IPAM's) own error, passed on with its code unchanged.
    #[error("{plugin}: {msg}")]
    Delegated {
        plugin: String,
        code: u32,
        msg: String,
        details: String,
    },
}

impl CniError {
    /// The spec's code (1-99 are the spec's own; a delegated plugin's code is kept).
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } => 1,
            CniError::UnsupportedField { .. } => 2,
            CniError::BadEnv { .. } => 4,
            CniError::Io { .. } => 5,
            CniError::Decode { .. } => 6,
            CniError::InvalidConfig { .. } => 7,
            CniError::TryAgainLater { .. } => 11,
            CniError::NotAvailable { .. } => 50,
            CniError::Delegated { code, .. } => *code,
        }
    }

    /// What to do about it; empty where the message says it all.
    pub fn details(&self) -> String {
        match self {
            CniError::IncompatibleVersion { .. } => {
                "set \"cniVersion\": \"1.0.0\" or \"1.1.0\" in the network config".into()
            }
            CniError::UnsupportedField { .. } => {
                "CNI_ARGS keys vportd does not know are refused unless CNI_ARGS holds IgnoreUnknown=1"
                    .into()
            }
            CniError::InvalidConfig { hint, .. } => hint.clone(),
            CniError::Delegated { details, .. } => details.clone(),
            _ => String::new(),
        }
    }

    /// The error JSON the spec asks for on stdout, in `version` (the caller's, when known).
    pub fn to_json(&self, version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: String,
            #[serde(skip_serializing_if = "String::is_empty")]
            details: String,
        }
        let msg = match self {
            CniError::Delegated { msg, .. } => msg.clone(),
            other => other.to_string(),
        };
        serde_json::to_string(&Wire {
            cni_version: version,
            code: self.code(),
            msg,
            details: self.details(),
        })
        .expect("strings and numbers always serialize")
    }

    pub(crate) fn invalid(
        key: impl Into<String>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> CniError {
        CniError::InvalidConfig {
            key: key.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields_in_the_spec_order() {
        let e = CniError::invalid("vlan", "5000 is not a VLAN id", "use 1 to 4094");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlan\": 5000 is not a VLAN id","details":"use 1 to 4094"}"#
        );
        let e = CniError::TryAgainLater {
            why: "the daemon is down".into(),
        };
        assert_eq!(
            e.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":11,"msg":"the daemon is down"}"#
        );
    }

    #[test]
    fn a_delegated_error_keeps_its_code_and_text() {
        let e = CniError::Delegated {
            plugin: "host-local".into(),
            code: 999,
            msg: "no IP addresses available".into(),
            details: "range full".into(),
        };
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":999,"msg":"no IP addresses available","details":"range full"}"#
        );
    }
}

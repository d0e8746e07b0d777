//! The Container Network Interface, spec 1.1.0 (and 1.0.0, which Debian 12's runtimes
//! speak), as pure data and decisions: the environment a runtime sets, the network config
//! on stdin, the result and error JSON on stdout, the VERSION answer, and the MAC an
//! attachment gets when the runtime names none. Nothing here reads the environment, a
//! file or a socket: the plugin's entry point (`cli::cni`) hands the inputs in, so every
//! rule is tested as a table of inputs and exact answers.

pub mod config;
pub mod env;
pub mod error;
pub mod mac;
pub mod result;

pub use config::{NetConf, Target};
pub use env::{Command, Env};
pub use error::CniError;
pub use result::CniResult;

/// The spec versions this plugin speaks, oldest first. 1.0.0 is what Debian 12's libcni
/// sends; 1.1.0 adds STATUS, GC and the `pciID` of an interface.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// The newest version spoken: the one errors are written in when the caller's is unknown.
pub const LATEST_VERSION: &str = "1.1.0";

/// The `type` a network config names this plugin by (the executable's file name).
pub const PLUGIN_TYPE: &str = "vportd";

/// The answer to VERSION: the versions spoken, in the caller's version when it is one of
/// them (a runtime may ask in any version, and must be able to read the answer).
pub fn version_answer(asked: Option<&str>) -> String {
    let v = asked
        .filter(|a| SUPPORTED_VERSIONS.contains(a))
        .unwrap_or(LATEST_VERSION);
    serde_json::json!({ "cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_in_the_callers_version_when_it_can() {
        assert_eq!(
            version_answer(Some("1.0.0")),
            r#"{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}"#
        );
        for asked in [None, Some("0.4.0"), Some("2.0.0")] {
            assert_eq!(
                version_answer(asked),
                r#"{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}"#
            );
        }
    }
}

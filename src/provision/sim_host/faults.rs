//! Injected faults: the nth call of an operation fails with the errno the kernel returns, so
//! that apply's rollback and convergence are proven.

use super::{Op, SimHost};
use crate::provision::ops::HostError;

impl SimHost {
    pub(super) fn fault(&mut self, op: Op, name: &'static str) -> Result<(), HostError> {
        let n = {
            let c = self.calls.entry(name).or_insert(0);
            *c += 1;
            *c
        };
        for (fop, nth, errno, times) in &self.faults {
            if *fop == op && n >= *nth && n < nth + times {
                return Err(HostError::Netlink {
                    what: format!("{name} (injected fault)"),
                    errno: Some(*errno),
                    message: errno.desc().into(),
                });
            }
        }
        Ok(())
    }
}

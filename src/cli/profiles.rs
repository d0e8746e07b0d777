//! `vportd profiles`: the built-in hardware profiles, or a directory of them checked.

use std::path::Path;

use super::{Failure, emit};

pub(super) fn run(check: Option<&Path>, json: bool) -> Result<(), Failure> {
    let text = crate::facts::profile::run_profiles(check, json).map_err(Failure::input)?;
    emit(&text);
    Ok(())
}

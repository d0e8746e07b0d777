//! `vportd plan CONFIG`: where each vPort would go and the steps to get there.

use std::path::Path;

use super::{Failure, apply, emit, provision_failure, render, to_json};
use crate::host::userfiles::UserFiles;
use crate::model::profile::ProfileSet;
use crate::provision;
use crate::provision::plan::PlanOptions;

pub(super) fn run(config: &Path, json: bool, allow_disruption: bool) -> Result<(), Failure> {
    let opts = PlanOptions { allow_disruption };
    let cfg = provision::config::load(&UserFiles, config).map_err(Failure::input)?;
    let inv = apply::planning_inventory(&cfg, opts)?;
    let p = provision::prepare_config_read_back(
        &UserFiles,
        cfg,
        &inv,
        ProfileSet::builtin(),
        opts,
        &mut crate::host::ethtool::LiveQueues,
    )
    .map_err(provision_failure)?;
    if json {
        emit(&(to_json(&p.plan) + "\n"));
    } else {
        emit(&render::plan(&p.plan));
    }
    Ok(())
}

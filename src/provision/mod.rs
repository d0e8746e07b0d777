//! Provisioning: a host config is parsed and checked (`config`), planned against the
//! host's facts (`plan`, pure), carried out step by step with a journal (`apply`) and
//! remembered (`state`), its files kept through a `store`; `reconcile` answers hotplug events with the same pipeline, and
//! `sim_host` is a simulated SR-IOV host with the kernel's rules, for tests and demos.

pub mod apply;
pub mod config;
pub mod ops;
pub mod pipeline;
pub mod plan;
pub mod reconcile;
pub mod sim_host;
pub mod state;
pub mod store;

pub use pipeline::*;

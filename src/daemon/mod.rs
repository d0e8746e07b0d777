//! The long-running daemon: its loop (`service`), the control socket's protocol and
//! handlers, kernel and udev events, the Prometheus metrics, and `vportd top`. The
//! rebalancing itself is [`crate::rebalance`]'s; the daemon runs it and shows it.

pub mod cni;
pub mod events;
pub mod handlers;
pub mod irqbalance;
pub mod metrics;
pub mod plan_inputs;
pub mod protocol;
pub mod service;
pub mod top;

pub use service::*;

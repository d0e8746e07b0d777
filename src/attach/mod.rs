//! Connecting a NIC to a vPort: what Hyper-V's control plane calls "connect", for the
//! runtimes that ask for it. Today that is containers through CNI ([`cni`], the protocol as
//! pure data and decisions) and the delegation of addresses to an IPAM plugin ([`ipam`], the
//! one part here that runs another program). Moving netdevs between namespaces and pools of
//! VFs come next, in the daemon, which owns every allocation.

pub mod book;
pub mod cni;
pub mod ipam;

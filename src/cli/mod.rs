//! The command line's subcommands: the only code that prints and maps errors to exit
//! codes.

pub mod cni;
pub mod ctl;
pub mod render;

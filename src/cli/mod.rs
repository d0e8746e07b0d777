//! The command line's subcommands: the only code that prints and maps errors to exit
//! codes.

pub mod ctl;
pub mod libvirt;
pub mod render;
pub mod tap_netns;

//! The `vportd` binary: everything it does is in the library's `cli` module. Started by a
//! container runtime as a CNI plugin (CNI_COMMAND set, no arguments), it answers as one.

fn main() -> std::process::ExitCode {
    if vportd::cli::cni::invoked_as_plugin() {
        return vportd::cli::cni::main();
    }
    vportd::cli::main()
}

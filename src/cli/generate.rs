//! `vportd generate`: the man pages and shell completions, made from the command line's own
//! definition (args.rs) so they cannot drift from `--help`. Hidden: it is for packagers
//! (scripts/package), not operators.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Failure;
use super::args::Cli;

/// What to generate.
#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Write vportd.8 and a vportd-SUBCOMMAND.8 page for every subcommand (hidden ones
    /// left out, nested ones included) into DIR, created if missing; prints their paths.
    Man { dir: PathBuf },
    /// Print the completion script for SHELL on stdout.
    Completions { shell: clap_complete::Shell },
}

pub(super) fn run(args: GenerateArgs) -> Result<(), Failure> {
    match args.what {
        What::Man { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::runtime(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
            let mut cmd = Cli::command().disable_help_subcommand(true);
            cmd.build();
            let mut out = std::io::stdout().lock();
            for path in man_pages(&cmd, &dir)? {
                let _ = writeln!(out, "{}", path.display());
            }
            Ok(())
        }
        What::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "vportd", &mut std::io::stdout().lock());
            Ok(())
        }
    }
}

/// Writes the pages of `cmd` and its visible subcommands, depth first; their paths.
fn man_pages(cmd: &clap::Command, dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let mut written = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(man_pages(sub, dir)?);
    }
    // Section 8: vportd is a system administration command, run as root.
    let page = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("vportd {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text)
        .and_then(|()| std::fs::write(&path, &text))
        .map_err(|e| {
            Failure::runtime(format!("cannot write the man page {}: {e}", path.display()))
        })?;
    written.push(path);
    Ok(written)
}

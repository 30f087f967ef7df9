//! `vigil completions SHELL` and `vigil manpage DIR` (both hidden): the shell completions and man pages
//! that `make install` puts in place, made from the command line's own definitions so that they cannot
//! drift from it.

use std::path::Path;

use clap::CommandFactory;

/// The completion script for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut crate::Cli::command(), "vigil", &mut std::io::stdout());
}

/// `vigil.1` and a page per command (`vigil-run.1`, `vigil-cmap-set.1`, ...) in `dir`.
pub fn manpages(dir: &Path) -> std::io::Result<()> {
    let mut cmd = crate::Cli::command();
    // Gives every command its full name ("vigil cmap set") for the synopsis and its page's title.
    cmd.build();
    write(dir, &cmd)
}

fn write(dir: &Path, cmd: &clap::Command) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut f =
        std::fs::File::create(&path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    clap_mangen::Man::new(cmd.clone()).render(&mut f)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write(dir, sub)?;
    }
    Ok(())
}

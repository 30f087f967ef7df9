//! pmfadm's grammar told to clap, for its help, man page and shell completions only: parsing stays
//! with `args` (getopt's rules, which clap cannot express). `pmfadm --help`, `pmfadm --completions SHELL`
//! and `pmfadm --manpage DIR` (which `make install` runs) print them; Solaris' pmfadm takes no long
//! option, so no invocation that worked there changes meaning.

use std::path::Path;

use clap::{Arg, ArgAction, ArgGroup, Command};

/// pmfadm as a clap command: every mode and option with what it means.
pub fn command() -> Command {
    let tag = |id: &'static str, short: char, help: &'static str| {
        Arg::new(id)
            .short(short)
            .value_name("nametag")
            .help(help)
            .help_heading("Modes (exactly one)")
    };
    let opt = |id: &'static str, short: char, value: &'static str, help: &'static str| {
        Arg::new(id).short(short).value_name(value).help(help)
    };
    Command::new("pmfadm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Solaris Cluster's process monitor facility on vigild: start, watch and restart processes")
        .long_about(
            "Solaris Cluster's process monitor facility command line, pmfadm(1M), on vigild: the same modes, \
             options, output and exit codes. Options follow getopt: they may be clustered (-En3), their value \
             attached (-n3) or the next word (-n -1); the first word that is not an option, or --, ends them. \
             vigild is found through $VIGIL_SOCKET, else the default socket.\n\nExit codes: 0 success; 1 the \
             nametag does not exist (or, for -c, already does); 2 a -w wait ran out; 3 a usage error; 4 vigild \
             refused or failed; 5 vigild cannot be reached.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(tag("create", 'c', "Create nametag and start command under it"))
        .arg(tag(
            "kill",
            'k',
            "Send signal (default KILL) to every process of nametag; monitoring goes on",
        ))
        .arg(
            Arg::new("list_all")
                .short('L')
                .action(ArgAction::SetTrue)
                .help("List every registered nametag of the caller (of everyone, for root)")
                .help_heading("Modes (exactly one)"),
        )
        .arg(tag("list", 'l', "Print the status of nametag"))
        .arg(tag("modify", 'm', "Give nametag a new retry budget (-n, -t)"))
        .arg(tag(
            "query",
            'q',
            "Exit 0 if nametag is registered, 1 if not; print nothing",
        ))
        .arg(tag(
            "stop",
            's',
            "Stop monitoring nametag, send signal if one is named, forget it once its processes are gone",
        ))
        .group(
            ArgGroup::new("mode")
                .args(["create", "kill", "list_all", "list", "modify", "query", "stop"])
                .required(true),
        )
        .arg(opt(
            "action",
            'a',
            "action",
            "-c: when the budget is spent, run `action failed nametag`: exit 0 restarts with a fresh budget",
        ))
        .arg(
            opt(
                "env",
                'e',
                "ENV_VAR=value",
                "-c: an environment variable for the command (repeatable)",
            )
            .action(ArgAction::Append),
        )
        .arg(
            Arg::new("inherit_env")
                .short('E')
                .action(ArgAction::SetTrue)
                .help("-c: pass pmfadm's whole environment to the command (not with -e)"),
        )
        .arg(opt(
            "retries",
            'n',
            "retries",
            "-c, -m: restarts allowed within the period: 0 never (the default), -1 no limit",
        ))
        .arg(opt(
            "period",
            't',
            "period",
            "-c, -m: the window in minutes over which restarts count; -1 (the default): the tag's life",
        ))
        .arg(opt(
            "level",
            'C',
            "level#",
            "-c: monitor descendants down to this level (0: the process only); default: every one",
        ))
        .arg(opt(
            "wait",
            'w',
            "timeout",
            "-k, -s: wait up to timeout seconds for the processes to be gone (-1: no limit); exit 2 if not",
        ))
        .arg(opt(
            "host",
            'h',
            "host",
            "-l, -L, -q: ask the vigild of this node (cluster mode)",
        ))
        .arg(
            Arg::new("operands")
                .value_name("command [args...] | signal")
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .help("-c: the command and its arguments; -k, -s: the signal, a name (TERM) or a number"),
        )
}

/// `--help`, `--completions SHELL` or `--manpage DIR`, if `words` are one of them: what to exit with.
pub fn generate(words: &[String]) -> Option<Result<(), String>> {
    match words {
        [flag] if flag == "--help" => {
            print!("{}", command().render_long_help());
            Some(Ok(()))
        }
        [flag, shell] if flag == "--completions" => Some(match shell.parse::<clap_complete::Shell>() {
            Ok(sh) => {
                clap_complete::generate(sh, &mut command(), "pmfadm", &mut std::io::stdout());
                Ok(())
            }
            Err(e) => Err(format!("--completions {shell}: {e}")),
        }),
        [flag, dir] if flag == "--manpage" => {
            let page = Path::new(dir).join("pmfadm.8");
            Some(
                std::fs::File::create(&page)
                    .and_then(|mut f| clap_mangen::Man::new(command()).section("8").render(&mut f))
                    .map_err(|e| format!("--manpage: cannot write {}: {e}", page.display())),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    /// The definitions are consistent, and `--help` and the man page describe every mode and option.
    #[test]
    fn the_manual_command_is_consistent_and_describes_every_option() {
        let cmd = super::command();
        cmd.clone().debug_assert();
        for a in cmd.get_arguments() {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "{} has no help", a.get_id());
        }
        // Every letter pmfadm's own parser knows is described.
        for letter in crate::args::WITH_VALUE.chars().chain(crate::args::FLAGS.chars()) {
            assert!(
                cmd.get_arguments().any(|a| a.get_short() == Some(letter)),
                "-{letter} is not described"
            );
        }
    }
}

//! `vigild`: parse options, set up logging, run the daemon; re-exec in place when asked.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Parser;

/// vigil's daemon: keeps vital processes alive.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "vigil's daemon: keeps vital processes alive, serves `vigil`, `pmfadm` and the C libraries on its socket",
    long_about = "vigil's daemon: keeps vital processes alive, serves `vigil`, `pmfadm` and the C libraries on its \
                  socket. It runs in the foreground and logs to stderr; under systemd (Type=notify) it says READY=1 \
                  once its socket serves.\n\nSignals: TERM or INT stop every tag and exit; HUP re-executes vigild in \
                  place (no process is touched).\n\nExit codes: 0 a clean stop; 2 a usage error; 65 a damaged \
                  state file (see --recover); 111 a failure worth a retry (the socket in use, say).",
    after_help = "See docs/vigild.md for the config file, the files vigild keeps and its permissions."
)]
struct Args {
    /// Directory for the state file and the logs [default: /var/lib/vigil for root, else
    /// $XDG_STATE_HOME/vigil or ~/.local/state/vigil]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Socket to listen on [default: /run/vigil/vigild.sock for root, else $XDG_RUNTIME_DIR/vigil/vigild.sock]
    #[arg(long, env = "VIGIL_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// TOML file declaring tags that start with vigild
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How descendants are found: the netlink process connector (exact parentage, levels and exit
    /// statuses), a /proc scan on every exit, or auto (the connector when the kernel allows it)
    #[arg(long, value_enum, default_value_t = vigild::Tracking::Auto, value_name = "HOW")]
    tracking: vigild::Tracking,
    /// This node's name, in events and PSM answers [default: the host name]
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Join the cluster on etcd at these client URLs, comma-separated (http://HOST:2379, or https:// with
    /// --etcd-ca); needs --node. Not in a build without the `cluster` feature
    #[arg(
        long,
        value_delimiter = ',',
        requires = "node",
        value_name = "URLS",
        help_heading = "Cluster mode"
    )]
    cluster: Vec<String>,
    /// The cluster's name in etcd: keys live under /vigil/NAME/
    #[arg(
        long,
        default_value = "vigil",
        requires = "cluster",
        value_name = "NAME",
        help_heading = "Cluster mode"
    )]
    cluster_name: String,
    /// Seconds a node stays up in etcd after its last keepalive (etcd's minimum is 2)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=3600), requires = "cluster", value_name = "SECS", help_heading = "Cluster mode")]
    lease_ttl: u64,
    /// PEM file of the CA that signed etcd's certificates
    #[arg(long, requires = "cluster", value_name = "FILE", help_heading = "Cluster mode")]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key)
    #[arg(long, requires_all = ["cluster", "etcd_key"], value_name = "FILE", help_heading = "Cluster mode")]
    etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert
    #[arg(long, requires_all = ["cluster", "etcd_cert"], value_name = "FILE", help_heading = "Cluster mode")]
    etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password)
    #[arg(long, requires_all = ["cluster", "etcd_password"], value_name = "USER", help_heading = "Cluster mode")]
    etcd_user: Option<String>,
    /// etcd password of --etcd-user
    #[arg(
        long,
        env = "VIGIL_ETCD_PASSWORD",
        hide_env_values = true,
        requires = "etcd_user",
        value_name = "PASSWORD",
        help_heading = "Cluster mode"
    )]
    etcd_password: Option<String>,
    /// Connections one user other than root may hold [default: `[daemon] max_connections_per_uid`, or 256]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "N")]
    max_connections_per_uid: Option<u64>,
    /// Recover a damaged state file: salvage what can be read, fill the gaps from the copy kept at the
    /// last clean shutdown, keep the damaged file aside, print what was lost, and exit
    #[arg(long)]
    recover: bool,
    /// Check the --config file as vigild would load it (TOML, every tag, category and key), say what it
    /// declares or what is wrong, and exit (0: valid, 1: not); nothing is started or written
    #[arg(long, requires = "config")]
    check: bool,
    /// What to log: error, warn, info, debug or trace, or a tracing filter (`info,vigild::pmf=debug`)
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    /// Internal: copy stdin to stdout with a timestamp before each line (a tag's `log_timestamps`)
    #[arg(long, hide = true)]
    stamp_log: bool,
    /// How the log on stderr is written: text (for people; colours only on a terminal) or json (one
    /// object per line, for log shippers)
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    log_format: LogFormat,
    /// Print the completion script for SHELL (bash, zsh, fish, ...) and exit (`make install` runs it)
    #[arg(long, hide = true, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// Write vigild's man page into DIR and exit (`make install` runs it)
    #[arg(long, hide = true, value_name = "DIR", exclusive = true)]
    manpage: Option<PathBuf>,
}

/// The shape of vigild's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// A line per record: time, level, message, fields
    Text,
    /// A JSON object per line: timestamp, level, target, fields (message among them), spans
    Json,
}

/// `--completions` and `--manpage`: the files `make install` puts in place, made from these very
/// definitions so that they cannot drift from the options.
fn generate(args: &Args) -> Option<std::process::ExitCode> {
    use clap::CommandFactory;
    if let Some(shell) = args.completions {
        clap_complete::generate(shell, &mut Args::command(), "vigild", &mut std::io::stdout());
        return Some(std::process::ExitCode::SUCCESS);
    }
    let dir = args.manpage.as_ref()?;
    let page = dir.join("vigild.8");
    let r = std::fs::File::create(&page).and_then(|mut f| {
        clap_mangen::Man::new(Args::command().name("vigild"))
            .section("8")
            .render(&mut f)
    });
    Some(match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigild: --manpage: cannot write {}: {e}", page.display());
            std::process::ExitCode::FAILURE
        }
    })
}

fn default_state_dir() -> PathBuf {
    if vigil_sys::getuid() == 0 {
        return "/var/lib/vigil".into();
    }
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("vigil"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".local/state/vigil"),
    }
}

fn default_socket() -> PathBuf {
    if vigil_sys::getuid() == 0 {
        return "/run/vigil/vigild.sock".into();
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("vigil/vigild.sock"),
        None => format!("/tmp/vigil-{}/vigild.sock", vigil_sys::getuid()).into(),
    }
}

/// The exit code for a damaged state file (sysexits' EX_DATAERR): permanent, a restart finds the same
/// file; `vigild --recover` is what helps.
const EXIT_DAMAGED: u8 = 65;

fn recover(state_dir: &std::path::Path) -> std::process::ExitCode {
    match vigil_store::recover(&state_dir.join("state.redb")) {
        Ok(r) => {
            print!("{r}");
            std::process::ExitCode::SUCCESS
        }
        Err(e @ vigil_store::StoreError::Refused { .. }) => {
            eprintln!("vigild: {e}");
            std::process::ExitCode::from(EXIT_DAMAGED)
        }
        Err(e) => {
            eprintln!("vigild: {e}");
            std::process::ExitCode::from(111)
        }
    }
}

/// A path as given, made absolute against the directory vigild was started in: the state dir and the
/// socket are handed to every tag (`NOTIFY_SOCKET`, its log's path in status), whose own working
/// directory is another, so a relative path would name nothing there.
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// `--check`: the config file loaded as at start (as the user vigild runs as), nothing else.
fn check(config: &std::path::Path) -> std::process::ExitCode {
    let (uid, gid) = (vigil_sys::getuid(), vigil_sys::getgid());
    // The files the start reads besides the config: the HTTP API's TLS certificate and key.
    let loaded =
        vigild::config::load(config, uid, gid).and_then(|c| vigild::http::tls::check(&c.settings.http).map(|()| c));
    match loaded {
        Ok(c) => {
            println!(
                "vigild: {}: valid: {} tags, {} PSM categories, {} CMAP keys",
                config.display(),
                c.tags.len(),
                c.categories.len(),
                c.cmap_keys.len()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // The error names the file already ("config PATH: ...").
            eprintln!("vigild: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if args.stamp_log {
        return vigild::stamp::run();
    }
    if let Some(code) = generate(&args) {
        return code;
    }
    // A usage error, not a failure at start worth a retry by whoever started vigild.
    #[cfg(not(feature = "cluster"))]
    if !args.cluster.is_empty() {
        eprintln!("vigild: --cluster: {}", vigild::cluster::without::DISABLED);
        return std::process::ExitCode::from(2);
    }
    args.state_dir = args.state_dir.map(absolute);
    args.socket = args.socket.map(absolute);
    args.config = args.config.map(absolute);
    if let (true, Some(config)) = (args.check, &args.config) {
        return check(config);
    }
    if args.recover {
        // redb's lock keeps --recover off a sound file in use, but a file refused before redb sees it is
        // not locked: a vigild that answers is one still writing to the file about to be replaced.
        let socket = args.socket.unwrap_or_else(default_socket);
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            eprintln!(
                "vigild: --recover: a vigild answers on {}: stop it first",
                socket.display()
            );
            return std::process::ExitCode::from(111);
        }
        return recover(&args.state_dir.unwrap_or_else(default_state_dir));
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level);
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vigild: --log-level {}: {e}", args.log_level);
            return std::process::ExitCode::from(2);
        }
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        // Colours only for a person at a terminal: a log file or a journal gets plain text.
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The message beside the other fields at the top of the object, where shippers look for it.
        LogFormat::Json => log.json().flatten_event(true).with_ansi(false).init(),
    }
    let opts = vigild::Options {
        state_dir: args.state_dir.unwrap_or_else(default_state_dir),
        socket: args.socket.unwrap_or_else(default_socket),
        config: args.config,
        tracking: args.tracking,
        node: args.node,
        cluster: (!args.cluster.is_empty()).then_some(vigild::cluster::ClusterOptions {
            endpoints: args.cluster,
            cluster: args.cluster_name,
            lease_ttl: args.lease_ttl,
            ca: args.etcd_ca,
            cert: args.etcd_cert,
            key: args.etcd_key,
            user: args.etcd_user,
            password: args.etcd_password,
        }),
        max_connections_per_uid: args.max_connections_per_uid.map(|n| n as usize),
    };
    match vigild::run_daemon(opts) {
        Ok(vigild::Exit::Shutdown) => std::process::ExitCode::SUCCESS,
        Ok(vigild::Exit::Reexec) => {
            // Same pid, so vigild stays the parent of every process it started.
            // The path vigild was started from, not /proc/self/exe: after an upgrade that replaced the
            // file, the path names the new binary while /proc/self/exe still names the old one.
            let err = std::process::Command::new(&exe)
                .arg0(std::env::args_os().next().unwrap_or_else(|| "vigild".into()))
                .args(std::env::args_os().skip(1))
                .env("VIGILD_REEXEC", "1")
                .exec();
            eprintln!("vigild: cannot re-exec: {err}");
            std::process::ExitCode::from(111)
        }
        Err(e)
            if e.chain()
                .any(|c| matches!(c.downcast_ref(), Some(vigil_store::StoreError::Damaged { .. }))) =>
        {
            eprintln!("vigild: {e:#}");
            eprintln!(
                "vigild: nothing was started. `vigild --recover` (with the same --state-dir) salvages what can be \
                 read, keeps the damaged file aside and says what was lost"
            );
            std::process::ExitCode::from(EXIT_DAMAGED)
        }
        Err(e)
            if e.chain()
                .any(|c| matches!(c.downcast_ref(), Some(vigil_store::StoreError::Refused { .. }))) =>
        {
            // Permanent like damage, but nothing for --recover to do: the operator fixes the path.
            eprintln!("vigild: {e:#}");
            std::process::ExitCode::from(EXIT_DAMAGED)
        }
        Err(e) => {
            eprintln!("vigild: {e:#}");
            // 111: a temporary failure (s6's convention), worth a retry by whoever started us.
            std::process::ExitCode::from(111)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `vigild --help` and the man page describe every option, and the definitions are consistent.
    #[test]
    fn every_option_is_described() {
        let cmd = super::Args::command();
        cmd.clone().debug_assert();
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "--{} has no help", a.get_id());
        }
    }
}

//! `vigil-sam-app`: a scriptable SAM application, for tests, benchmarks and trying SAM out.
//!
//! It calls `initialize` (unless told not to), runs the `--pre` steps in the registering process, calls
//! `register`, and then each instance runs the script chosen for its instance number (`--on N:SCRIPT`,
//! else `--otherwise SCRIPT`). A script is steps separated by `;`. Every step appends one line
//! `<instance> <step> <result>` to `--out` (instance 0 before `register`), where the result is `ok`, a
//! value, or the error's name (`BadHandle`, `InvalidParam`, ...), so a test reads exactly what each call
//! returned.
//!
//! Steps: `init:INTERVAL:POLICY` `register` `start` `stop` `hc` `beat:MS` (heartbeats every interval/4 for
//! MS ms) `beats:N` (N heartbeats, timed: prints calls/s) `finalize` `mark-failed` `warn:SIG`
//! `store:TEXT` (`{n}` is the instance) `stores:N` (N stores of 8 bytes one after another: prints how
//! many times the process slept meanwhile, its voluntary context switches, and how long they took in µs)
//! `store-big:BYTES` `check-big:BYTES` `delete` `data` `size`
//! `restore-small` `catch` (the warn signals SIGTERM/SIGUSR1 are caught and reported instead of ending
//! the process) `hang` (waits forever, reporting caught signals) `sleep:MS` `wait:FILE` (waits for a
//! file to exist) `callback:K` (a health-check callback healthy for K calls, failing after)
//! `callback-none` `stamp` (prints the monotonic clock in ns) `abort` `exit:CODE`.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vigil_client::sam::{self, SamError};

#[derive(Parser, Debug)]
#[command(about = "A scriptable SAM application")]
struct Cli {
    /// Where each step's result goes (appended; one line per step).
    #[arg(long)]
    out: PathBuf,
    /// Health-check interval, ms.
    #[arg(long, default_value_t = 1000)]
    interval: i32,
    /// Recovery policy: quit or restart, with +quorum and +cmap; or a number.
    #[arg(long, default_value = "restart")]
    policy: String,
    /// Steps run before `initialize` is called (e.g. calls that must fail).
    #[arg(long, default_value = "")]
    before: String,
    /// Steps run after `initialize`, before `register`.
    #[arg(long, default_value = "")]
    pre: String,
    /// The script of instance N: `N:STEPS`.
    #[arg(long = "on")]
    on: Vec<String>,
    /// The script of every other instance.
    #[arg(long, default_value = "finalize;exit:0")]
    otherwise: String,
    /// Each instance first writes `N registered NS`: the monotonic clock when `register` returned.
    #[arg(long)]
    stamp: bool,
}

fn policy_bits(s: &str) -> u32 {
    if let Ok(n) = s.parse::<u32>() {
        return n;
    }
    s.split('+')
        .map(|p| match p {
            "quit" => sam::POLICY_QUIT,
            "restart" => sam::POLICY_RESTART,
            "quorum" => sam::POLICY_QUORUM,
            "cmap" => sam::POLICY_CMAP,
            other => panic!("unknown policy part {other:?}"),
        })
        .fold(0, |a, b| a | b)
}

struct App {
    out: PathBuf,
    instance: u32,
    interval: i32,
    caught: Arc<AtomicUsize>,
}

static CALLBACK_LEFT: AtomicU32 = AtomicU32::new(0);

impl App {
    fn line(&self, step: &str, result: impl std::fmt::Display) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out)
            .expect("open --out");
        // One write per line: lines of several processes never interleave.
        f.write_all(format!("{} {step} {result}\n", self.instance).as_bytes())
            .expect("write --out");
    }

    fn result(&self, step: &str, r: Result<(), SamError>) {
        match r {
            Ok(()) => self.line(step, "ok"),
            Err(e) => self.line(step, format!("{e:?}")),
        }
    }

    fn report_caught(&self) {
        let sig = self.caught.swap(0, Ordering::SeqCst);
        if sig != 0 {
            self.line("caught", sig);
        }
    }

    fn beat_for(&self, ms: u64) {
        let tick = Duration::from_millis((self.interval as u64 / 4).max(1));
        let end = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < end {
            if let Err(e) = sam::hc_send() {
                self.line("beat", format!("{e:?}"));
                return;
            }
            self.report_caught();
            std::thread::sleep(tick);
        }
        self.line("beat", "ok");
    }

    fn run(&self, script: &str) {
        for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, arg) = step.split_once(':').unwrap_or((step, ""));
            match name {
                "init" => {
                    let (i, p) = arg.split_once(':').expect("init:INTERVAL:POLICY");
                    self.result(step, sam::initialize(i.parse().expect("interval"), policy_bits(p)));
                }
                "register" => match sam::register() {
                    Ok(n) => self.line(step, n),
                    Err(e) => self.line(step, format!("{e:?}")),
                },
                "start" => self.result(step, sam::start()),
                "stop" => self.result(step, sam::stop()),
                "hc" => self.result(step, sam::hc_send()),
                "beat" => self.beat_for(arg.parse().expect("beat:MS")),
                "beats" => {
                    // Calls per second, then the distribution of single calls (ns): min p50 p99 max mean n.
                    let n: usize = arg.parse().expect("beats:N");
                    let mut each = Vec::with_capacity(n);
                    let t = Instant::now();
                    for _ in 0..n {
                        let c = Instant::now();
                        if let Err(e) = sam::hc_send() {
                            self.line("beats", format!("{e:?}"));
                            return;
                        }
                        each.push(c.elapsed().as_nanos() as u64);
                    }
                    let rate = n as f64 / t.elapsed().as_secs_f64();
                    each.sort_unstable();
                    let pct = |p: usize| each[(each.len() * p / 100).min(each.len() - 1)];
                    let mean = each.iter().sum::<u64>() / each.len().max(1) as u64;
                    self.line(
                        "beats",
                        format!(
                            "{rate:.0} {} {} {} {} {mean} {n}",
                            each[0],
                            pct(50),
                            pct(99),
                            each[each.len() - 1]
                        ),
                    );
                }
                "finalize" => self.result(step, sam::finalize()),
                "mark-failed" => self.result(step, sam::mark_failed()),
                "warn" => self.result(step, sam::warn_signal_set(arg.parse().expect("warn:SIG"))),
                "store" => {
                    let text = arg.replace("{n}", &self.instance.to_string());
                    self.result(step, sam::data_store(Some(text.as_bytes())));
                }
                "stores" => {
                    let n: usize = arg.parse().expect("stores:N");
                    let before = voluntary_switches();
                    let t = Instant::now();
                    for i in 0..n {
                        if let Err(e) = sam::data_store(Some(format!("{i:08}").as_bytes())) {
                            return self.line(step, format!("{e:?}"));
                        }
                    }
                    let took = t.elapsed().as_micros();
                    self.line(step, format!("{} {took}", voluntary_switches().saturating_sub(before)));
                }
                "store-big" => self.result("store-big", sam::data_store(Some(&pattern(arg.parse().expect("n"))))),
                "check-big" => {
                    let n: usize = arg.parse().expect("n");
                    let mut buf = vec![0u8; n];
                    match sam::data_restore(&mut buf) {
                        Ok(got) if got == n && buf == pattern(n) => self.line("check-big", "ok"),
                        Ok(got) => self.line("check-big", format!("mismatch:{got}")),
                        Err(e) => self.line("check-big", format!("{e:?}")),
                    }
                }
                "delete" => self.result(step, sam::data_store(None)),
                "data" => match sam::data_restore_vec() {
                    Ok(d) if d.is_empty() => self.line(step, "-"),
                    Ok(d) => self.line(step, String::from_utf8_lossy(&d)),
                    Err(e) => self.line(step, format!("{e:?}")),
                },
                "size" => match sam::data_getsize() {
                    Ok(n) => self.line(step, n),
                    Err(e) => self.line(step, format!("{e:?}")),
                },
                "restore-small" => {
                    let n = sam::data_getsize().unwrap_or(0);
                    let mut buf = vec![0u8; n.saturating_sub(1)];
                    match sam::data_restore(&mut buf) {
                        Ok(n) => self.line(step, n),
                        Err(e) => self.line(step, format!("{e:?}")),
                    }
                }
                "catch" => {
                    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
                        signal_hook::flag::register_usize(sig, self.caught.clone(), sig as usize)
                            .expect("install a signal handler");
                    }
                    self.line(step, "ok");
                }
                "hang" => loop {
                    self.report_caught();
                    std::thread::sleep(Duration::from_millis(5));
                },
                "sleep" => {
                    std::thread::sleep(Duration::from_millis(arg.parse().expect("sleep:MS")));
                    self.report_caught();
                    self.line(step, "ok");
                }
                "wait" => {
                    let f = PathBuf::from(arg);
                    while !f.exists() {
                        self.report_caught();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    self.line(step, "ok");
                }
                "callback" => {
                    CALLBACK_LEFT.store(arg.parse().expect("callback:K"), Ordering::SeqCst);
                    let cb: sam::HcCallback = Arc::new(|| {
                        let left = CALLBACK_LEFT.load(Ordering::SeqCst);
                        if left == 0 {
                            return 1;
                        }
                        CALLBACK_LEFT.store(left - 1, Ordering::SeqCst);
                        0
                    });
                    self.result(step, sam::hc_callback_register(Some(cb)));
                }
                "callback-none" => self.result(step, sam::hc_callback_register(None)),
                "stamp" => self.line(step, vigil_sys::monotonic_now_ns()),
                "abort" => {
                    self.line(step, "now");
                    std::process::abort();
                }
                "exit" => {
                    self.line(step, arg);
                    std::process::exit(arg.parse().expect("exit:CODE"));
                }
                other => panic!("unknown step {other:?}"),
            }
        }
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn main() {
    let cli = Cli::parse();
    let mut app = App {
        out: cli.out.clone(),
        instance: 0,
        interval: cli.interval,
        caught: Arc::new(AtomicUsize::new(0)),
    };
    app.run(&cli.before);
    if !cli.before.contains("init:") {
        app.result("initialize", sam::initialize(cli.interval, policy_bits(&cli.policy)));
    }
    app.run(&cli.pre);
    let instance = match sam::register() {
        Ok(n) if cli.stamp => {
            let t = vigil_sys::monotonic_now_ns();
            app.instance = n;
            app.line("registered", t);
            n
        }
        Ok(n) => n,
        Err(e) => {
            app.line("register", format!("{e:?}"));
            std::process::exit(70);
        }
    };
    app.instance = instance;
    app.line("register", instance);
    let script = cli
        .on
        .iter()
        .find_map(|s| {
            let (n, steps) = s.split_once(':')?;
            (n.parse::<u32>().ok()? == instance).then_some(steps)
        })
        .unwrap_or(&cli.otherwise);
    app.run(script);
}

/// This thread's voluntary context switches so far (`/proc/thread-self/status`).
fn voluntary_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

//! pmfadm's own grammar: one mode letter with its nametag, the options that mode takes, then operands.
//!
//! Parsed as POSIX getopt does (Solaris' pmfadm is a getopt program): options may be clustered (`-En3`)
//! or take their value attached (`-n3`) or as the next word, even one that starts with a dash (`-n -1`);
//! the first word that is not an option, or `--`, ends the options. So `pmfadm -c tag cmd -x` gives `-x`
//! to `cmd`. clap cannot say "stop at the first operand and keep the rest verbatim, with mode letters
//! that each carry a value", hence this small parser.

use vigil_client::proto;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub mode: Mode,
    /// `-h host`: the node to ask (another node through vigild in cluster mode).
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-c`: create the tag and start its command.
    Create(Create),
    /// `-m`: a new retry budget.
    Modify {
        tag: String,
        retries: Option<i64>,
        period: Option<Period>,
    },
    /// `-s`: stop monitoring, signal, forget the tag once its processes are gone.
    Stop {
        tag: String,
        wait: Wait,
        signal: Option<i32>,
    },
    /// `-k`: signal, keep monitoring.
    Kill { tag: String, wait: Wait, signal: i32 },
    /// `-l`: the status of one tag.
    Status { tag: String },
    /// `-L`: every tag of the caller (of everyone, for root).
    List,
    /// `-q`: exit 0 if the tag is registered, 1 if not.
    Query { tag: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub tag: String,
    pub action: Option<String>,
    /// `-e` pairs, in order.
    pub env: Vec<(String, String)>,
    /// `-E`: pass pmfadm's whole environment.
    pub inherit_env: bool,
    pub retries: Option<i64>,
    pub period: Option<Period>,
    /// `-C`: deepest monitored level; None watches every descendant.
    pub level: Option<i64>,
    pub command: Vec<String>,
}

/// pmfadm's `-t`: minutes, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Unlimited,
    Minutes(u32),
}

impl Period {
    /// vigild counts the period in seconds, -1 for no limit.
    pub fn secs(self) -> i64 {
        match self {
            Period::Unlimited => -1,
            Period::Minutes(m) => i64::from(m) * 60,
        }
    }
}

/// `-w`: how long to wait for the processes to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No `-w`, or `-w 0`: return at once.
    No,
    Secs(u32),
    /// `-w -1`: no limit.
    Forever,
}

/// A usage error: the sentence says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, Usage> {
    Err(Usage(msg.into()))
}

pub const SYNOPSIS: &str = "\
usage: pmfadm -c nametag [-a action] [[-e ENV_VAR=env.var...] | -E] [-n retries] [-t period] [-C level#]
              command [args-to-command...]
       pmfadm -k nametag [-w timeout] [signal]
       pmfadm -L [-h host]
       pmfadm -l nametag [-h host]
       pmfadm -m nametag [-n retries] [-t period]
       pmfadm -q nametag [-h host]
       pmfadm -s nametag [-w timeout] [signal]
";

/// The mode letters, each followed by a nametag except `-L`.
const MODES: &str = "cklLmqs";
/// Letters that take a value.
pub(crate) const WITH_VALUE: &str = "acCehklmnqstw";
/// Letters that stand alone.
pub(crate) const FLAGS: &str = "EL";

#[derive(Default)]
struct Raw {
    /// (mode letter, nametag) in the order given.
    modes: Vec<(char, String)>,
    action: Option<String>,
    env: Vec<String>,
    inherit_env: bool,
    retries: Option<String>,
    period: Option<String>,
    level: Option<String>,
    wait: Option<String>,
    host: Option<String>,
    /// Options seen, for the "only with" checks, in order.
    seen: Vec<char>,
}

fn once(slot: &mut Option<String>, c: char, v: String) -> Result<(), Usage> {
    if slot.is_some() {
        return usage(format!("-{c} is given twice"));
    }
    *slot = Some(v);
    Ok(())
}

/// Splits the words after `pmfadm` into options and operands, then checks them against the mode.
pub fn parse(args: &[String]) -> Result<Invocation, Usage> {
    let mut raw = Raw::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let letters: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < letters.len() {
            let c = letters[j];
            if FLAGS.contains(c) {
                raw.seen.push(c);
                match c {
                    'E' => raw.inherit_env = true,
                    _ => raw.modes.push((c, String::new())),
                }
                j += 1;
                continue;
            }
            if !WITH_VALUE.contains(c) {
                return usage(format!("unknown option -{c}"));
            }
            let value = if j + 1 < letters.len() {
                letters[j + 1..].iter().collect()
            } else {
                i += 1;
                match args.get(i) {
                    Some(v) => v.clone(),
                    None => return usage(format!("option -{c} needs {}", what_value(c))),
                }
            };
            raw.seen.push(c);
            match c {
                'a' => once(&mut raw.action, c, value)?,
                'e' => raw.env.push(value),
                'n' => once(&mut raw.retries, c, value)?,
                't' => once(&mut raw.period, c, value)?,
                'C' => once(&mut raw.level, c, value)?,
                'w' => once(&mut raw.wait, c, value)?,
                'h' => once(&mut raw.host, c, value)?,
                m => raw.modes.push((m, value)),
            }
            break;
        }
        i += 1;
    }
    check(raw, &args[i.min(args.len())..])
}

fn what_value(c: char) -> &'static str {
    match c {
        'a' => "an action program",
        'e' => "ENV_VAR=value",
        'n' => "a number of retries",
        't' => "a period in minutes",
        'C' => "a level",
        'w' => "a timeout in seconds",
        'h' => "a host",
        _ => "a nametag",
    }
}

/// Which modes each option belongs to.
fn allowed(c: char) -> &'static str {
    match c {
        'a' | 'e' | 'E' | 'C' => "c",
        'n' | 't' => "cm",
        'w' => "ks",
        'h' => "lLq",
        _ => MODES,
    }
}

fn modes_text(modes: &str) -> String {
    let v: Vec<String> = modes.chars().map(|m| format!("-{m}")).collect();
    match v.len() {
        1 => v[0].clone(),
        _ => format!("{} and {}", v[..v.len() - 1].join(", "), v[v.len() - 1]),
    }
}

fn check(raw: Raw, operands: &[String]) -> Result<Invocation, Usage> {
    let (mode, tag) = match raw.modes.as_slice() {
        [] => return usage("no mode given: use one of -c, -k, -l, -L, -m, -q, -s"),
        [one] => one.clone(),
        [a, b, ..] if a.0 == b.0 => return usage(format!("-{} is given twice", a.0)),
        [a, b, ..] => return usage(format!("-{} and -{} cannot be used together: give one mode", a.0, b.0)),
    };
    for &c in &raw.seen {
        if !MODES.contains(c) && !allowed(c).contains(mode) {
            return usage(format!(
                "-{c} cannot be used with -{mode}; it goes with {}",
                modes_text(allowed(c))
            ));
        }
    }
    if mode != 'L' && tag.is_empty() {
        return usage(format!("-{mode} needs a nametag"));
    }
    if !raw.env.is_empty() && raw.inherit_env {
        return usage("-e and -E cannot be used together: -E already passes the whole environment");
    }
    let retries = raw.retries.as_deref().map(retries).transpose()?;
    let period = raw.period.as_deref().map(period).transpose()?;
    let wait = raw.wait.as_deref().map(wait).transpose()?.unwrap_or(Wait::No);
    let no_operands = |what: &str| match operands.first() {
        Some(extra) => usage(format!("unexpected argument {extra:?}: -{mode} takes {what}")),
        None => Ok(()),
    };
    let signal = |default: Option<i32>| -> Result<Option<i32>, Usage> {
        match operands {
            [] => Ok(default),
            [s] => proto::signal_from_str(s).map(Some).ok_or_else(|| {
                Usage(format!(
                    "{s:?} is not a signal: use a name (TERM, SIGTERM, term) or a number from 1 to 64"
                ))
            }),
            [_, extra, ..] => usage(format!("unexpected argument {extra:?}: -{mode} takes one signal")),
        }
    };
    let mode = match mode {
        'c' => {
            if operands.is_empty() {
                return usage(format!("-c {tag} needs a command to run"));
            }
            let env = raw
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => usage(format!("-e {kv:?}: expected ENV_VAR=value")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let level = raw.level.as_deref().map(level).transpose()?;
            Mode::Create(Create {
                tag,
                action: raw.action,
                env,
                inherit_env: raw.inherit_env,
                retries,
                period,
                level,
                command: operands.to_vec(),
            })
        }
        'm' => {
            no_operands("no other argument")?;
            if retries.is_none() && period.is_none() {
                return usage(format!("-m {tag} needs -n retries and/or -t period"));
            }
            Mode::Modify { tag, retries, period }
        }
        's' => Mode::Stop {
            signal: signal(None)?,
            tag,
            wait,
        },
        'k' => Mode::Kill {
            // pmfadm -k sends SIGKILL when no signal is named.
            signal: signal(Some(9))?.expect("a default"),
            tag,
            wait,
        },
        'l' => {
            no_operands("no other argument")?;
            Mode::Status { tag }
        }
        'L' => {
            no_operands("no argument")?;
            Mode::List
        }
        'q' => {
            no_operands("no other argument")?;
            Mode::Query { tag }
        }
        m => unreachable!("mode letter {m}"),
    };
    Ok(Invocation { mode, host: raw.host })
}

fn integer(flag: char, v: &str) -> Result<i64, Usage> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| Usage(format!("-{flag} {v:?} is not a whole number")))
}

fn retries(v: &str) -> Result<i64, Usage> {
    match integer('n', v)? {
        n @ -1.. => Ok(n),
        n => usage(format!("-n {n}: use -1 (no limit) or 0 and up")),
    }
}

fn period(v: &str) -> Result<Period, Usage> {
    match integer('t', v)? {
        -1 => Ok(Period::Unlimited),
        // A year of minutes is far beyond any sensible window and keeps the seconds in range.
        m @ 1..=525_600 => Ok(Period::Minutes(m as u32)),
        m => usage(format!(
            "-t {m}: the period is in minutes: use -1 (no limit) or 1 to 525600"
        )),
    }
}

fn level(v: &str) -> Result<i64, Usage> {
    match integer('C', v)? {
        // -1 is scds_pmf_start's "every level", the same as no -C.
        n @ -1.. => Ok(n),
        n => usage(format!(
            "-C {n}: use 0 (the process only), 1 (and its children), ... or -1 (all)"
        )),
    }
}

fn wait(v: &str) -> Result<Wait, Usage> {
    match integer('w', v)? {
        -1 => Ok(Wait::Forever),
        0 => Ok(Wait::No),
        s @ 1..=31_536_000 => Ok(Wait::Secs(s as u32)),
        s => usage(format!(
            "-w {s}: the timeout is in seconds: use 0 (do not wait), 1 to 31536000, or -1 (no limit)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Invocation, Usage> {
        parse(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    fn mode(line: &str) -> Mode {
        p(line).unwrap_or_else(|e| panic!("{line}: {}", e.0)).mode
    }

    fn err(line: &str) -> String {
        match p(line) {
            Err(Usage(m)) => m,
            Ok(i) => panic!("{line}: parsed as {i:?}"),
        }
    }

    #[test]
    fn create_with_every_option() {
        let Mode::Create(c) = mode("-c web -a /bin/decide -e A=1 -e B=x=y -n -1 -t 5 -C 2 sleep -x 10") else {
            panic!()
        };
        assert_eq!(c.tag, "web");
        assert_eq!(c.action.as_deref(), Some("/bin/decide"));
        assert_eq!(c.env, [("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        assert_eq!(
            (c.retries, c.period, c.level),
            (Some(-1), Some(Period::Minutes(5)), Some(2))
        );
        assert_eq!(c.command, ["sleep", "-x", "10"], "the command keeps its own options");
        assert_eq!(Period::Minutes(5).secs(), 300);
    }

    #[test]
    fn getopt_forms() {
        let Mode::Create(c) = mode("-Ecweb -n3 -t-1 -- -weird") else {
            panic!()
        };
        assert!(c.inherit_env);
        assert_eq!(
            (c.tag.as_str(), c.retries, c.period),
            ("web", Some(3), Some(Period::Unlimited))
        );
        assert_eq!(c.command, ["-weird"]);
        assert_eq!(mode("-L"), Mode::List);
        assert_eq!(
            p("-L -h node1").unwrap().host.as_deref(),
            Some("node1"),
            "-h goes with -L"
        );
    }

    #[test]
    fn stop_and_kill_signals() {
        assert_eq!(
            mode("-s web"),
            Mode::Stop {
                tag: "web".into(),
                wait: Wait::No,
                signal: None
            }
        );
        assert_eq!(
            mode("-s web -w 5 KILL"),
            Mode::Stop {
                tag: "web".into(),
                wait: Wait::Secs(5),
                signal: Some(9)
            }
        );
        assert_eq!(
            mode("-k web"),
            Mode::Kill {
                tag: "web".into(),
                wait: Wait::No,
                signal: 9
            },
            "pmfadm -k defaults to SIGKILL"
        );
        assert_eq!(
            mode("-k web -w -1 sigusr1"),
            Mode::Kill {
                tag: "web".into(),
                wait: Wait::Forever,
                signal: 10
            }
        );
        assert_eq!(
            mode("-k web 15"),
            Mode::Kill {
                tag: "web".into(),
                wait: Wait::No,
                signal: 15
            }
        );
        assert_eq!(
            mode("-k web -w 0 HUP"),
            Mode::Kill {
                tag: "web".into(),
                wait: Wait::No,
                signal: 1
            }
        );
    }

    #[test]
    fn usage_errors_name_the_problem() {
        for (line, want) in [
            ("", "no mode given"),
            ("-n 3", "no mode given"),
            ("-c", "option -c needs a nametag"),
            ("-c web", "needs a command"),
            ("-c web -s web sleep 1", "-c and -s cannot be used together"),
            ("-q a -q b", "-q is given twice"),
            ("-x web", "unknown option -x"),
            ("-c web -n three sleep 1", "-n \"three\" is not a whole number"),
            ("-c web -n -2 sleep 1", "-n -2"),
            ("-c web -t 0 sleep 1", "the period is in minutes"),
            ("-c web -C -3 sleep 1", "-C -3"),
            ("-c web -e FOO sleep 1", "expected ENV_VAR=value"),
            ("-c web -e =1 sleep 1", "expected ENV_VAR=value"),
            ("-c web -e A=1 -E sleep 1", "-e and -E cannot be used together"),
            (
                "-c web -w 3 sleep 1",
                "-w cannot be used with -c; it goes with -k and -s",
            ),
            ("-s web -n 3", "-n cannot be used with -s; it goes with -c and -m"),
            (
                "-c web -h n1 sleep 1",
                "-h cannot be used with -c; it goes with -l, -L and -q",
            ),
            ("-s web BOGUS", "\"BOGUS\" is not a signal"),
            ("-k web 0", "\"0\" is not a signal"),
            ("-k web TERM KILL", "takes one signal"),
            ("-w x -k web", "-w \"x\" is not a whole number"),
            ("-m web", "needs -n retries and/or -t period"),
            ("-l web extra", "unexpected argument \"extra\""),
            ("-L extra", "unexpected argument"),
            ("-q web -n 1", "-n cannot be used with -q"),
        ] {
            let e = err(line);
            assert!(e.contains(want), "{line:?}: {e:?} lacks {want:?}");
        }
    }
}

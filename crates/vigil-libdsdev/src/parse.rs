//! What libdsdev reads from its callers' strings: a data service method's arguments and a command line.
//! Pure functions, so every rule is tested without C or a daemon.

/// What `scds_initialize` takes from a method's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodArgs {
    pub resource: String,
    pub resource_type: String,
    pub group: String,
    /// `-r Retry_count=N`: restarts allowed within the interval (-1 without limit).
    pub retry_count: Option<i64>,
    /// `-r Retry_interval=S`: the interval, in seconds.
    pub retry_interval: Option<i64>,
}

/// Why the arguments were refused (`SCHA_ERR_INVAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// `-R`, `-T` or `-G` is missing, or its value is empty.
    Missing(char),
    /// An option that takes a value came last.
    NoValue(char),
    /// `-r Retry_count=` or `-r Retry_interval=` is not an integer of pmfadm's range.
    BadProperty(String),
}

/// The options of the RGM's method command lines that take a value: `-R resource -T type -G group`, and
/// `-r`, `-x`, `-g` property overrides, `-Z zone`. Their values are skipped, so that a value that looks like
/// an option (`-x Name=-R`) is not read as one. Other arguments are ignored, as `scds_initialize` leaves
/// them to no one.
const WITH_VALUE: &str = "RTGrxgZ";

/// Reads `-R`, `-T` and `-G` (each either `-R name` or `-Rname`), and the restart budget's standard
/// properties `Retry_count` and `Retry_interval` from `-r` overrides. The last of a repeated option wins.
pub fn method_args<S: AsRef<str>>(args: &[S]) -> Result<MethodArgs, ArgsError> {
    let (mut r, mut t, mut g) = (None, None, None);
    let (mut count, mut interval) = (None, None);
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(arg) = it.next() {
        let mut chars = arg.chars();
        let (Some('-'), Some(opt)) = (chars.next(), chars.next()) else {
            continue;
        };
        if !WITH_VALUE.contains(opt) {
            continue;
        }
        let joined = chars.as_str();
        let value = if joined.is_empty() {
            it.next().ok_or(ArgsError::NoValue(opt))?
        } else {
            joined
        };
        match opt {
            'R' => r = Some(value.to_string()),
            'T' => t = Some(value.to_string()),
            'G' => g = Some(value.to_string()),
            'r' => {
                if let Some((name, v)) = value.split_once('=') {
                    // Property names are case-insensitive in Solaris Cluster.
                    if name.eq_ignore_ascii_case("Retry_count") {
                        count = Some(budget_number(value, v)?);
                    } else if name.eq_ignore_ascii_case("Retry_interval") {
                        interval = Some(budget_number(value, v)?);
                    }
                }
            }
            _ => {}
        }
    }
    let need = |v: Option<String>, opt: char| v.filter(|s| !s.is_empty()).ok_or(ArgsError::Missing(opt));
    Ok(MethodArgs {
        resource: need(r, 'R')?,
        resource_type: need(t, 'T')?,
        group: need(g, 'G')?,
        retry_count: count,
        retry_interval: interval,
    })
}

fn budget_number(arg: &str, v: &str) -> Result<i64, ArgsError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= -1)
        .ok_or_else(|| ArgsError::BadProperty(arg.to_string()))
}

/// Why a command line was refused (`SCHA_ERR_INVAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    UnclosedQuote(char),
    TrailingBackslash,
}

/// Splits a command line into its program and arguments as `sh` splits words, and does nothing else: blanks
/// separate words; `'...'` keeps everything; `"..."` keeps everything but `\"`, `\\`, `\$` and `` \` ``;
/// a backslash outside quotes keeps the next character. No variable, glob, redirection or pipe: the words go
/// to the program as they are, as if typed after `pmfadm -c TAG`, and the program itself is level 0.
pub fn split_command(line: &str) -> Result<Vec<String>, CommandError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(q) => word.push(q),
                        None => return Err(CommandError::UnclosedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(o) => {
                                word.push('\\');
                                word.push(o);
                            }
                            None => return Err(CommandError::UnclosedQuote('"')),
                        },
                        Some(q) => word.push(q),
                        None => return Err(CommandError::UnclosedQuote('"')),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => {
                    in_word = true;
                    word.push(e);
                }
                None => return Err(CommandError::TrailingBackslash),
            },
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<MethodArgs, ArgsError> {
        method_args(&line.split(' ').collect::<Vec<_>>())
    }

    #[test]
    fn method_arguments() {
        let ok = args("start -R web-rs -T SUNW.apache -G web-rg").unwrap();
        assert_eq!(
            (ok.resource.as_str(), ok.resource_type.as_str(), ok.group.as_str()),
            ("web-rs", "SUNW.apache", "web-rg")
        );
        assert_eq!((ok.retry_count, ok.retry_interval), (None, None));
        // Joined values, other options and their values, a repeated option.
        let ok = args("m -Rrs -x Name=-R -c -Tt -u -G g -R rs2 -Z zone").unwrap();
        assert_eq!(
            (ok.resource.as_str(), ok.resource_type.as_str(), ok.group.as_str()),
            ("rs2", "t", "g")
        );
        let ok = args("m -R r -T t -G g -r Retry_count=3 -r retry_interval=60 -r Other=x").unwrap();
        assert_eq!((ok.retry_count, ok.retry_interval), (Some(3), Some(60)));

        let table: &[(&str, ArgsError)] = &[
            ("m", ArgsError::Missing('R')),
            ("m -R r -T t", ArgsError::Missing('G')),
            ("m -R r -G g", ArgsError::Missing('T')),
            ("m -T t -G g", ArgsError::Missing('R')),
            ("m -R r -T t -G", ArgsError::NoValue('G')),
            ("m -R  -T t -G g", ArgsError::Missing('R')),
            (
                "m -R r -T t -G g -r Retry_count=x",
                ArgsError::BadProperty("Retry_count=x".into()),
            ),
            (
                "m -R r -T t -G g -r Retry_interval=-2",
                ArgsError::BadProperty("Retry_interval=-2".into()),
            ),
        ];
        for (line, want) in table {
            assert_eq!(args(line).as_ref(), Err(want), "{line}");
        }
    }

    #[test]
    fn command_lines() {
        let table: &[(&str, &[&str])] = &[
            ("/bin/sleep 100", &["/bin/sleep", "100"]),
            ("  a\tb\n c  ", &["a", "b", "c"]),
            ("sh -c 'echo $HOME; exit 3'", &["sh", "-c", "echo $HOME; exit 3"]),
            (r#"echo "a \"b\" \$c \x" d"#, &["echo", r#"a "b" $c \x"#, "d"]),
            (r"a\ b c\'d", &["a b", "c'd"]),
            ("x''y \"\"", &["xy", ""]),
            ("a > out | b", &["a", ">", "out", "|", "b"]),
        ];
        for (line, want) in table {
            assert_eq!(split_command(line).unwrap(), *want, "{line}");
        }
        assert_eq!(split_command("  "), Err(CommandError::Empty));
        assert_eq!(split_command("a 'b"), Err(CommandError::UnclosedQuote('\'')));
        assert_eq!(split_command("a \"b"), Err(CommandError::UnclosedQuote('"')));
        assert_eq!(split_command("a \\"), Err(CommandError::TrailingBackslash));
    }
}

//! Environment files: `KEY=VALUE` lines, as systemd's `EnvironmentFile=` and docker's `--env-file` read
//! them. Blank lines and lines starting with `#` are skipped; an optional `export ` prefix is allowed;
//! a value wholly inside matching single or double quotes loses them. Nothing else is interpreted (no
//! `$VAR` expansion, no escapes), so a value means the same wherever the file is read.

/// Why an environment file was refused: the line (from 1) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct EnvFileError {
    pub line: usize,
    pub problem: String,
}

/// The variables of an environment file's text, in order (a later line with the same name wins when
/// they are applied in order).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let bad = |problem: String| EnvFileError { line: i + 1, problem };
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("{line:?} is not KEY=VALUE")))?;
        let k = k.trim_end();
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(bad(format!("{k:?} is not a variable name (letters, digits and _)")));
        }
        let v = v.trim_start();
        let v = match v.as_bytes() {
            [q @ (b'"' | b'\''), .., e] if q == e && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v,
        };
        if v.contains('\0') {
            return Err(bad(format!("the value of {k} contains a NUL byte")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes_and_errors() {
        let text = "# a comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE=\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "quoted # not a comment".into()),
                ("D".into(), "x".into()),
                ("E".into(), "".into()),
            ]
        );
        assert_eq!(
            parse("A=1\nnonsense\n").unwrap_err().to_string(),
            "line 2: \"nonsense\" is not KEY=VALUE"
        );
        assert!(parse("1A=x")
            .unwrap_err()
            .to_string()
            .starts_with("line 1: \"1A\" is not a variable name"));
    }
}

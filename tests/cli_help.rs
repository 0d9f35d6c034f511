//! `fusegated --help` and the README's flag table must agree: the same flags, the same
//! defaults. (The table once said `--threads` defaults to 2 while the code chose half the CPUs.)

use std::collections::BTreeMap;
use std::process::Command;

/// Flag -> its default, if it states one.
type Flags = BTreeMap<String, Option<String>>;

/// The `--long` and `-s` flags in a piece of text, in order.
fn flags_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with('-') && w.len() > 1 && !w.starts_with("---"))
        .map(str::to_string)
        .collect()
}

/// The text between `open` and the next `close`, whitespace collapsed.
fn between(text: &str, open: &str, close: char) -> Option<String> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(
        text[start..start + len]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Entries of the help: a line indented by four spaces that starts with '-', followed by its
/// deeper-indented continuation lines.
fn help_flags(help: &str) -> Flags {
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        if let Some(rest) = line.strip_prefix("    ") {
            if rest.starts_with('-') {
                // The flag names end at the first run of two spaces.
                let (names, text) = rest.split_once("  ").unwrap_or((rest, ""));
                entries.push((names.to_string(), text.to_string()));
                continue;
            }
            if rest.starts_with(' ') {
                if let Some(last) = entries.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(rest.trim());
                }
                continue;
            }
        }
    }
    let mut flags = Flags::new();
    for (names, text) in entries {
        let default = between(&text, "[default: ", ']');
        for flag in flags_in(&names) {
            assert!(
                flags.insert(flag.clone(), default.clone()).is_none(),
                "--help lists {flag} twice"
            );
        }
    }
    flags
}

/// The rows of the README table headed `| flag | meaning |`.
fn readme_flags(readme: &str) -> Flags {
    let mut lines = readme
        .lines()
        .skip_while(|l| l.trim() != "| flag | meaning |");
    assert!(
        lines.next().is_some(),
        "README.md has no `| flag | meaning |` table"
    );
    let mut flags = Flags::new();
    for row in lines.skip(1).take_while(|l| l.starts_with('|')) {
        // `\|` is a literal bar inside a cell (Markdown's escape), not a cell border.
        let row_cells = row.replace("\\|", "\u{1}");
        let cells: Vec<String> = row_cells
            .trim_matches('|')
            .split('|')
            .map(|c| c.replace('\u{1}', "|"))
            .collect();
        assert_eq!(
            cells.len(),
            2,
            "README flag row {row:?} must have two cells"
        );
        let names: String = cells[0]
            .split('`')
            .skip(1)
            .step_by(2)
            .collect::<Vec<_>>()
            .join(" ");
        let default = between(&cells[1], "(default: ", ')');
        for flag in flags_in(&names) {
            assert!(
                flags.insert(flag.clone(), default.clone()).is_none(),
                "README lists {flag} twice"
            );
        }
    }
    flags
}

fn help_text() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fusegated"))
        .arg("--help")
        .output()
        .expect("running fusegated --help");
    assert!(out.status.success(), "fusegated --help failed: {out:?}");
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

#[test]
fn readme_table_matches_help() {
    let help = help_flags(&help_text());
    let readme_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("reading README.md");
    let readme = readme_flags(&readme_text);
    for flag in [
        "--lower",
        "--threads",
        "--cache-timeout",
        "--help",
        "--version",
    ] {
        assert!(
            help.contains_key(flag),
            "the help parser missed {flag}: {help:?}"
        );
    }
    for (flag, default) in &help {
        match readme.get(flag) {
            None => panic!("{flag} is in --help but not in the README's flag table"),
            Some(d) => assert_eq!(
                d, default,
                "default of {flag}: README says {d:?}, --help says {default:?}"
            ),
        }
    }
    for flag in readme.keys() {
        assert!(
            help.contains_key(flag),
            "{flag} is in the README's flag table but not in --help"
        );
    }
    // The one default the help states as a number is the code's.
    let code = fusegate::Options::default().cache_ttl.as_secs().to_string();
    assert_eq!(help["--cache-timeout"].as_deref(), Some(code.as_str()));
}

#[test]
fn parsers_see_defaults_and_mismatches() {
    let help = help_flags(
        "OPTIONS:\n    --a N        text\n                 [default: 3].\n    -b, --bee    none\n",
    );
    assert_eq!(help["--a"].as_deref(), Some("3"));
    assert_eq!(help["-b"], None);
    assert_eq!(help["--bee"], None);
    let readme = readme_flags(
        "x\n| flag | meaning |\n|---|---|\n| `--a N` | thing (default: 4) |\n| `-b`, `--bee` | y |\n\nafter\n",
    );
    assert_eq!(readme["--a"].as_deref(), Some("4"));
    assert_ne!(help["--a"], readme["--a"]);
    assert_eq!(readme.len(), 3);
}

#[test]
fn version_names_the_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_fusegated"))
        .arg("--version")
        .output()
        .expect("running fusegated --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("fusegated {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text:?}");
    // Built from this git checkout, build.rs must have found the revision.
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
        assert!(!text.contains("(git unknown)"), "{text:?}");
    }
}

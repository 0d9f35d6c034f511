//! Reading the Rust side of JNI: the registration table, the parameter types of the registered
//! functions, and constant values.

use crate::tokens::{closing, eval, ident, is_ident, is_punct, split_commas, text, tokenize, Tok};
use crate::{JNI_DIR, REGISTRATION};
use std::collections::BTreeMap;

pub struct Registered {
    pub signature: String,
    pub function: String,
    pub at: String,
}

/// `native("name", "signature", function as *mut c_void)` entries of the registration table.
pub fn read_registration(problems: &mut Vec<String>) -> BTreeMap<String, Registered> {
    let mut out = BTreeMap::new();
    let src = match std::fs::read_to_string(REGISTRATION) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("cannot read {REGISTRATION}: {e}"));
            return out;
        }
    };
    let toks = tokenize(&src);
    for i in 0..toks.len() {
        if !(is_ident(toks.get(i), "native") && is_punct(toks.get(i + 1), '(')) {
            continue;
        }
        let (Some(Tok::Str(name)), Some(Tok::Str(sig))) = (
            toks.get(i + 2).map(|t| &t.tok),
            toks.get(i + 4).map(|t| &t.tok),
        ) else {
            continue; // the definition of fn native, or a call not in literal form
        };
        // The function: a path up to `as`.
        let mut k = i + 6;
        let mut function = String::new();
        while let Some(t) = toks.get(k) {
            match &t.tok {
                Tok::Ident(s) if s == "as" => break,
                Tok::Ident(s) => function = s.clone(),
                Tok::Punct(':') => {}
                _ => break,
            }
            k += 1;
        }
        let at = format!("{REGISTRATION}:{}", toks[i + 2].line);
        if let Some(previous) = out.insert(
            name.clone(),
            Registered {
                signature: sig.clone(),
                function,
                at: at.clone(),
            },
        ) {
            problems.push(format!(
                "native method {name} is registered twice: {} and {at}",
                previous.at
            ));
        }
    }
    out
}

/// The JNI signature the parameter and return types of `extern "system" fn name` accept, as a
/// pattern: `L*;` stands for any object, `[L*;` for any object array.
pub fn rust_function_signature(name: &str) -> Option<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(JNI_DIR)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files {
        let src = std::fs::read_to_string(&path).ok()?;
        let toks = tokenize(&src);
        let Some(i) = (0..toks.len())
            .find(|&i| is_ident(toks.get(i), "fn") && is_ident(toks.get(i + 1), name))
        else {
            continue;
        };
        let at = format!("{}:{}", path.display(), toks[i].line);
        let mut open = i + 2;
        if is_punct(toks.get(open), '<') {
            open = closing(&toks, open) + 1;
        }
        let close = closing(&toks, open);
        let mut sig = String::from("(");
        // Skip the JNIEnv and the class (static natives) parameters.
        for param in split_commas(&toks[open + 1..close]).into_iter().skip(2) {
            let colon = param.iter().position(|t| t.tok == Tok::Punct(':'))?;
            let ty = ident(param.get(colon + 1))?;
            sig.push_str(rust_type(ty).unwrap_or("?"));
        }
        sig.push(')');
        let ret = if is_punct(toks.get(close + 1), '-') {
            rust_type(ident(toks.get(close + 3))?).unwrap_or("?")
        } else {
            "V"
        };
        sig.push_str(ret);
        return Some((sig, at));
    }
    None
}

fn rust_type(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "jboolean" => "Z",
        "jbyte" => "B",
        "jchar" => "C",
        "jshort" => "S",
        "jint" => "I",
        "jlong" => "J",
        "jfloat" => "F",
        "jdouble" => "D",
        "JString" => "Ljava/lang/String;",
        "JIntArray" => "[I",
        "JLongArray" => "[J",
        "JByteArray" => "[B",
        "JBooleanArray" => "[Z",
        "JObjectArray" => "[L*;",
        "JObject" | "jobject" | "JClass" => "L*;",
        _ => return None,
    })
}

/// Splits a JNI signature into its parameter descriptors and return descriptor.
pub fn descriptors(sig: &str) -> Option<(Vec<String>, String)> {
    let inner = sig.strip_prefix('(')?;
    let (params, ret) = inner.split_once(')')?;
    let mut out = Vec::new();
    let mut rest = params;
    while !rest.is_empty() {
        let dims = rest.len() - rest.trim_start_matches('[').len();
        let body = &rest[dims..];
        let len = if body.starts_with('L') {
            body.find(';')? + 1
        } else {
            1
        };
        out.push(rest[..dims + len].to_string());
        rest = &rest[dims + len..];
    }
    Some((out, ret.to_string()))
}

/// Whether a Rust-side descriptor (possibly a pattern) accepts a Java descriptor.
pub fn accepts(rust: &str, java: &str) -> bool {
    match rust {
        "L*;" => java.starts_with('L') || java.starts_with('['),
        "[L*;" => java.starts_with("[L") || java.starts_with("[["),
        exact => exact == java,
    }
}

/// The value of `const NAME: T = expr;` in a Rust file: (expression, value, file:line).
pub fn rust_constant(file: &str, name: &str) -> Result<(String, Option<i128>, String), String> {
    let src = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let toks = tokenize(&src);
    let found: Vec<usize> = (0..toks.len())
        .filter(|&i| {
            is_ident(toks.get(i), "const")
                && is_ident(toks.get(i + 1), name)
                && is_punct(toks.get(i + 2), ':')
        })
        .collect();
    match found.as_slice() {
        [i] => {
            let eq = (i + 3..toks.len())
                .find(|&k| is_punct(toks.get(k), '='))
                .unwrap_or(toks.len());
            let end = (eq..toks.len())
                .find(|&k| is_punct(toks.get(k), ';'))
                .unwrap_or(toks.len());
            let value_toks = &toks[(eq + 1).min(end)..end];
            Ok((
                text(value_toks),
                eval(value_toks),
                format!("{file}:{}", toks[*i].line),
            ))
        }
        [] => Err(format!("no `const {name}` in {file}")),
        _ => Err(format!(
            "`const {name}` is defined {} times in {file}: build.rs cannot tell which",
            found.len()
        )),
    }
}

//! Build-time work that cargo does and Soong does not (Soong runs no build script, so nothing
//! here may be needed to build for Android: every value it sets has a fallback in the code, and
//! the checks only stop a drifting tree from building).
//!
//! * The Java API and the Rust side of JNI must agree: every `native` method declared in
//!   `jni/src/main/java/dev/fusegate/*.java` is registered in `src/jni/mod.rs` under the same
//!   name and JNI signature, the Rust function registered for it takes matching parameter types,
//!   and every public constant of the Java API equals its Rust counterpart (`CONSTANTS`). On any
//!   drift the build fails with a message naming both places (file:line).
//! * The git revision for `fusegated --version` (`FUSEGATE_GIT_REVISION`).
//!
//! No dependencies: the Java and Rust sources are read with a small tokenizer that knows just
//! enough of both languages (comments, string literals, declarations).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const JAVA_DIR: &str = "jni/src/main/java/dev/fusegate";
const JAVA_PACKAGE: &str = "dev/fusegate";
/// The one class with natives, and where they are registered (`native("name", "sig", f)`).
const NATIVE_CLASS: &str = "FuseGate";
const REGISTRATION: &str = "src/jni/mod.rs";
/// Where the registered functions are defined.
const JNI_DIR: &str = "src/jni";

/// Every public constant of the Java API: (Class.NAME, Rust file, Rust constant name).
const CONSTANTS: &[(&str, &str, &str)] = &[
    ("FuseGate.READ_IMAGES", "src/policy/mod.rs", "READ_IMAGES"),
    ("FuseGate.READ_VIDEO", "src/policy/mod.rs", "READ_VIDEO"),
    ("FuseGate.READ_AUDIO", "src/policy/mod.rs", "READ_AUDIO"),
    (
        "FuseGate.ACCESS_MEDIA_LOCATION",
        "src/policy/mod.rs",
        "ACCESS_MEDIA_LOCATION",
    ),
    ("FuseGate.WRITE_MEDIA", "src/policy/mod.rs", "WRITE_MEDIA"),
    (
        "FuseGate.MANAGE_EXTERNAL_STORAGE",
        "src/policy/mod.rs",
        "MANAGE_EXTERNAL_STORAGE",
    ),
    (
        "FuseGate.LEGACY_STORAGE",
        "src/policy/mod.rs",
        "LEGACY_STORAGE",
    ),
    ("FuseGate.ALL_PERMISSIONS", "src/policy/mod.rs", "ALL"),
    ("FuseGate.ACCESS_READ", "src/jni/args.rs", "ACCESS_READ"),
    ("FuseGate.ACCESS_WRITE", "src/jni/args.rs", "ACCESS_WRITE"),
    ("Options.MAX_THREADS", "src/jni/args.rs", "MAX_THREADS"),
    (
        "Options.MAX_CACHE_TIMEOUT_MILLIS",
        "src/jni/args.rs",
        "MAX_CACHE_TIMEOUT_MS",
    ),
    ("Denial.EPERM", "src/jni/listener.rs", "EPERM"),
    ("Denial.ENOENT", "src/jni/listener.rs", "ENOENT"),
    ("Denial.EACCES", "src/jni/listener.rs", "EACCES"),
];

fn main() {
    for watched in ["build.rs", JAVA_DIR, JNI_DIR, "src/policy/mod.rs"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let problems = check_jni();
    if !problems.is_empty() {
        eprintln!(
            "\nerror: the Java API ({JAVA_DIR}) and the Rust JNI side disagree (checked by build.rs):\n"
        );
        for p in &problems {
            eprintln!("  * {}\n", p.replace('\n', "\n    "));
        }
        std::process::exit(1);
    }
    git_revision();
}

// ---- tokens ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Tokens of Java or Rust source: comments dropped, string and char literals kept whole
/// (escapes left as written), `'a` lifetimes dropped.
fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start_line = line;
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    s.push(chars[i]);
                    i += 1;
                }
                line += usize::from(chars[i] == '\n');
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Token {
                tok: Tok::Str(s),
                line: start_line,
            });
        } else if c == '\'' {
            // A char literal ('x', '\n') or a Rust lifetime ('l): skip either.
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(chars[start..i].iter().collect()),
                line,
            });
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                line,
            });
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    out
}

fn is_ident(t: Option<&Token>, name: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(s), .. }) if s == name)
}

fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token {
            tok: Tok::Ident(s), ..
        }) => Some(s),
        _ => None,
    }
}

/// Index of the token closing the bracket opened at `open`.
fn closing(toks: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('{') | Tok::Punct('<') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') | Tok::Punct('}') | Tok::Punct('>') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Splits `toks` at commas outside brackets.
fn split_commas(toks: &[Token]) -> Vec<&[Token]> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('<') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') | Tok::Punct('>') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        parts.push(&toks[start..]);
    }
    parts
}

/// The value of an integer constant expression: literals (decimal or hex, `_`, a type suffix
/// such as `L` or `u32`), `( )`, `*`, `+`, `-`, `<<`, `|`. `None` for anything else.
fn eval(toks: &[Token]) -> Option<i128> {
    fn literal(s: &str) -> Option<i128> {
        let s = s.replace('_', "");
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            return i128::from_str_radix(hex.trim_end_matches(['L', 'l']), 16).ok();
        }
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        let suffix = &s[digits.len()..];
        let known = [
            "", "L", "l", "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
        ];
        known
            .contains(&suffix)
            .then(|| digits.parse().ok())
            .flatten()
    }
    // Precedence climbing over: | (1), << (2), + - (3), * (4).
    fn expr(t: &[Token], pos: &mut usize, min: u8) -> Option<i128> {
        let mut lhs = atom(t, pos)?;
        loop {
            let (op, prec, width) =
                match (t.get(*pos).map(|t| &t.tok), t.get(*pos + 1).map(|t| &t.tok)) {
                    (Some(Tok::Punct('|')), _) => ('|', 1, 1),
                    (Some(Tok::Punct('<')), Some(Tok::Punct('<'))) => ('<', 2, 2),
                    (Some(Tok::Punct('+')), _) => ('+', 3, 1),
                    (Some(Tok::Punct('-')), _) => ('-', 3, 1),
                    (Some(Tok::Punct('*')), _) => ('*', 4, 1),
                    _ => return Some(lhs),
                };
            if prec < min {
                return Some(lhs);
            }
            *pos += width;
            let rhs = expr(t, pos, prec + 1)?;
            lhs = match op {
                '|' => lhs | rhs,
                '<' => lhs.checked_shl(u32::try_from(rhs).ok()?)?,
                '+' => lhs.checked_add(rhs)?,
                '-' => lhs.checked_sub(rhs)?,
                _ => lhs.checked_mul(rhs)?,
            };
        }
    }
    fn atom(t: &[Token], pos: &mut usize) -> Option<i128> {
        let tok = t.get(*pos)?;
        *pos += 1;
        match &tok.tok {
            Tok::Num(n) => literal(n),
            Tok::Punct('-') => atom(t, pos).map(|v| -v),
            Tok::Punct('(') => {
                let v = expr(t, pos, 0)?;
                is_punct(t.get(*pos), ')').then_some(())?;
                *pos += 1;
                Some(v)
            }
            _ => None,
        }
    }
    let mut pos = 0;
    let v = expr(toks, &mut pos, 0)?;
    (pos == toks.len()).then_some(v)
}

fn text(toks: &[Token]) -> String {
    let mut s = String::new();
    for t in toks {
        match &t.tok {
            Tok::Ident(x) | Tok::Num(x) => {
                if s.ends_with(|c: char| c.is_alphanumeric()) {
                    s.push(' ');
                }
                s.push_str(x);
            }
            Tok::Str(x) => write!(s, "{x:?}").unwrap(),
            Tok::Punct(c) => s.push(*c),
        }
    }
    s
}

// ---- Java -----------------------------------------------------------------------------------

struct JavaNative {
    signature: String,
    at: String,
}

struct JavaConstant {
    expr: String,
    value: Option<i128>,
    at: String,
}

struct Java {
    natives: BTreeMap<String, JavaNative>,
    constants: BTreeMap<String, JavaConstant>,
}

/// JNI descriptor of a Java type written as `name` followed by `dims` pairs of `[]`.
fn descriptor(
    name: &str,
    dims: usize,
    imports: &BTreeMap<String, String>,
    local: &[String],
) -> Option<String> {
    let base = match name {
        "boolean" => "Z".to_string(),
        "byte" => "B".into(),
        "char" => "C".into(),
        "short" => "S".into(),
        "int" => "I".into(),
        "long" => "J".into(),
        "float" => "F".into(),
        "double" => "D".into(),
        "void" => "V".into(),
        qualified if qualified.contains('.') => format!("L{};", qualified.replace('.', "/")),
        simple => {
            let class = if let Some(full) = imports.get(simple) {
                full.replace('.', "/")
            } else if local.iter().any(|c| c == simple) {
                format!("{JAVA_PACKAGE}/{simple}")
            } else if [
                "String",
                "Object",
                "Class",
                "Throwable",
                "CharSequence",
                "Integer",
                "Long",
                "Boolean",
                "Runnable",
            ]
            .contains(&simple)
            {
                format!("java/lang/{simple}")
            } else {
                return None;
            };
            format!("L{class};")
        }
    };
    Some(format!("{}{base}", "[".repeat(dims)))
}

/// A type at `toks[*i..]`: a dotted name and `[]` pairs; advances past it.
fn java_type(toks: &[Token], i: &mut usize) -> Option<(String, usize)> {
    let mut name = ident(toks.get(*i))?.to_string();
    *i += 1;
    while is_punct(toks.get(*i), '.')
        && ident(toks.get(*i + 1)).is_some()
        && !is_punct(toks.get(*i + 1), '.')
    {
        // `a.b.C` (a varargs `...` is three dots, never followed by an identifier directly)
        name.push('.');
        name.push_str(ident(toks.get(*i + 1))?);
        *i += 2;
    }
    let mut dims = 0;
    while is_punct(toks.get(*i), '[') && is_punct(toks.get(*i + 1), ']') {
        dims += 1;
        *i += 2;
    }
    Some((name, dims))
}

fn read_java(problems: &mut Vec<String>) -> Java {
    let mut java = Java {
        natives: BTreeMap::new(),
        constants: BTreeMap::new(),
    };
    let mut files: Vec<_> = match std::fs::read_dir(JAVA_DIR) {
        Ok(dir) => dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "java"))
            .collect(),
        Err(e) => {
            problems.push(format!("cannot read {JAVA_DIR}: {e}"));
            return java;
        }
    };
    files.sort();
    let local: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for path in &files {
        let shown = path.display().to_string();
        let class = path.file_stem().unwrap().to_string_lossy().into_owned();
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("cannot read {shown}: {e}"));
                continue;
            }
        };
        let toks = tokenize(&src);
        let mut imports = BTreeMap::new();
        let mut i = 0;
        while i < toks.len() {
            if is_ident(toks.get(i), "import") {
                let mut j = i + 1;
                if let Some((full, _)) = java_type(&toks, &mut j) {
                    let simple = full.rsplit('.').next().unwrap_or(&full).to_string();
                    imports.insert(simple, full);
                }
                i = j;
            } else if is_ident(toks.get(i), "native") {
                let at = format!("{shown}:{}", toks[i].line);
                let mut j = i + 1;
                match java_native(&toks, &mut j, &imports, &local) {
                    Ok((name, signature)) if class == NATIVE_CLASS => {
                        java.natives.insert(name, JavaNative { signature, at });
                    }
                    Ok((name, _)) => problems.push(format!(
                        "native method {class}.{name} at {at}: natives are registered on {NATIVE_CLASS} only ({REGISTRATION}); move it there or teach build.rs the other class"
                    )),
                    Err(why) => problems.push(format!("cannot read the native method at {at}: {why}")),
                }
                i = j;
            } else if is_ident(toks.get(i), "final") || is_ident(toks.get(i), "static") {
                i = java_constants(&toks, i, &class, &shown, &mut java, problems);
            } else {
                i += 1;
            }
        }
    }
    java
}

/// `native RET NAME(PARAMS)` from just after `native`: (name, JNI signature).
fn java_native(
    toks: &[Token],
    i: &mut usize,
    imports: &BTreeMap<String, String>,
    local: &[String],
) -> Result<(String, String), String> {
    let resolve = |name: &str, dims: usize| {
        descriptor(name, dims, imports, local).ok_or_else(|| {
            format!("cannot resolve the Java type {name} (import it, or teach build.rs)")
        })
    };
    let (ret, dims) = java_type(toks, i).ok_or("no return type")?;
    let ret = resolve(&ret, dims)?;
    let name = ident(toks.get(*i)).ok_or("no method name")?.to_string();
    *i += 1;
    if !is_punct(toks.get(*i), '(') {
        return Err(format!("{name}: no parameter list"));
    }
    let close = closing(toks, *i);
    let mut params = String::new();
    for param in split_commas(&toks[*i + 1..close]) {
        let mut k = 0;
        while is_ident(param.get(k), "final") {
            k += 1;
        }
        let (ty, mut dims) = java_type(param, &mut k)
            .ok_or_else(|| format!("{name}: cannot read parameter {}", text(param)))?;
        if is_punct(param.get(k), '.') {
            dims += 1; // varargs
            k += 3;
        }
        k += 1; // the parameter name
        while is_punct(param.get(k), '[') {
            dims += 1; // `int x[]`
            k += 2;
        }
        params.push_str(&resolve(&ty, dims)?);
    }
    *i = close + 1;
    Ok((name, format!("({params}){ret}")))
}

/// At a modifier: if the declaration is `public static final <int|long|...> A = x, B = y;`,
/// records its constants. Returns where to go on.
fn java_constants(
    toks: &[Token],
    start: usize,
    class: &str,
    shown: &str,
    java: &mut Java,
    problems: &mut Vec<String>,
) -> usize {
    let mut i = start;
    let mut modifiers = Vec::new();
    while let Some(m) = ident(toks.get(i)).filter(|m| {
        [
            "public",
            "private",
            "protected",
            "static",
            "final",
            "transient",
            "volatile",
        ]
        .contains(m)
    }) {
        modifiers.push(m);
        i += 1;
    }
    // The modifiers before `start` (scan back: `public` usually comes first).
    let mut b = start;
    while b > 0 {
        match ident(toks.get(b - 1)) {
            Some(m) if ["public", "private", "protected", "static", "final"].contains(&m) => {
                modifiers.push(m);
                b -= 1;
            }
            _ => break,
        }
    }
    let constant = ["public", "static", "final"]
        .iter()
        .all(|m| modifiers.contains(m));
    let Some(ty) = ident(toks.get(i)) else {
        return i.max(start + 1);
    };
    let after_type = i + 1;
    // A field, not a method or class: NAME followed by `=`.
    if !constant
        || !is_punct(toks.get(after_type + 1), '=')
        || ident(toks.get(after_type)).is_none()
    {
        return i.max(start + 1);
    }
    let end = (after_type..toks.len())
        .find(|&k| is_punct(toks.get(k), ';'))
        .unwrap_or(toks.len());
    for decl in split_commas(&toks[after_type..end]) {
        let Some(name) = ident(decl.first()) else {
            continue;
        };
        let at = format!("{shown}:{}", decl[0].line);
        if !["int", "long", "short", "byte"].contains(&ty) {
            problems.push(format!(
                "public constant {class}.{name} at {at} is a {ty}: build.rs compares only integer constants; teach it this type or make the constant non-public"
            ));
            continue;
        }
        let value_toks = &decl[2.min(decl.len())..];
        java.constants.insert(
            format!("{class}.{name}"),
            JavaConstant {
                expr: text(value_toks),
                value: eval(value_toks),
                at,
            },
        );
    }
    end
}

// ---- Rust -----------------------------------------------------------------------------------

struct Registered {
    signature: String,
    function: String,
    at: String,
}

/// `native("name", "signature", function as *mut c_void)` entries of the registration table.
fn read_registration(problems: &mut Vec<String>) -> BTreeMap<String, Registered> {
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
fn rust_function_signature(name: &str) -> Option<(String, String)> {
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
fn descriptors(sig: &str) -> Option<(Vec<String>, String)> {
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
fn accepts(rust: &str, java: &str) -> bool {
    match rust {
        "L*;" => java.starts_with('L') || java.starts_with('['),
        "[L*;" => java.starts_with("[L") || java.starts_with("[["),
        exact => exact == java,
    }
}

/// The value of `const NAME: T = expr;` in a Rust file: (expression, value, file:line).
fn rust_constant(file: &str, name: &str) -> Result<(String, Option<i128>, String), String> {
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

// ---- the checks -----------------------------------------------------------------------------

fn check_jni() -> Vec<String> {
    let mut problems = Vec::new();
    let java = read_java(&mut problems);
    let registered = read_registration(&mut problems);

    for (name, j) in &java.natives {
        let Some(r) = registered.get(name) else {
            problems.push(format!(
                "native method {name}: declared in Java at {}\nbut not registered in {REGISTRATION} (add native(\"{name}\", \"{}\", ...))",
                j.at, j.signature
            ));
            continue;
        };
        if r.signature != j.signature {
            problems.push(format!(
                "native method {name} has different signatures:\nJava declares {} at {}\nRust registers {} at {}",
                j.signature, j.at, r.signature, r.at
            ));
            continue;
        }
        match rust_function_signature(&r.function) {
            None => problems.push(format!(
                "native method {name}: the function {} registered at {} is not defined in {JNI_DIR}/ (as `fn {}`)",
                r.function, r.at, r.function
            )),
            Some((rust_sig, fn_at)) => {
                let ok = match (descriptors(&rust_sig), descriptors(&j.signature)) {
                    (Some((rp, rr)), Some((jp, jr))) => {
                        rp.len() == jp.len()
                            && rp.iter().zip(&jp).all(|(r, j)| accepts(r, j))
                            && accepts(&rr, &jr)
                    }
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "native method {name}: the Rust function does not take what Java passes:\nJava declares {} at {}\nfn {} at {fn_at} takes {rust_sig} (after JNIEnv and the class; L*; is any object)",
                        j.signature, j.at, r.function
                    ));
                }
            }
        }
    }
    for (name, r) in &registered {
        if !java.natives.contains_key(name) {
            problems.push(format!(
                "native method {name}: registered at {} as {}\nbut {NATIVE_CLASS}.java declares no such native (RegisterNatives would fail at load time)",
                r.at, r.signature
            ));
        }
    }

    let mapped: BTreeMap<&str, (&str, &str)> =
        CONSTANTS.iter().map(|&(j, f, r)| (j, (f, r))).collect();
    for (name, j) in &java.constants {
        let Some(&(file, rust_name)) = mapped.get(name.as_str()) else {
            problems.push(format!(
                "public constant {name} at {} has no Rust counterpart: add it to CONSTANTS in build.rs",
                j.at
            ));
            continue;
        };
        match rust_constant(file, rust_name) {
            Err(why) => problems.push(format!("constant {name} at {}: {why}", j.at)),
            Ok((expr, value, at)) => match (j.value, value) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => problems.push(format!(
                    "constant {name} differs:\nJava: {name} = {} at {}\nRust: {rust_name} = {expr} at {at}",
                    j.expr, j.at
                )),
                _ => problems.push(format!(
                    "constant {name}: build.rs cannot evaluate Java `{}` ({}) or Rust `{expr}` ({at}); write both as integer arithmetic",
                    j.expr, j.at
                )),
            },
        }
    }
    for (name, file, rust_name) in CONSTANTS {
        if !java.constants.contains_key(*name) {
            problems.push(format!(
                "CONSTANTS in build.rs maps {name} to {file} {rust_name}, but the Java API has no public constant {name}"
            ));
        }
    }
    problems
}

// ---- version --------------------------------------------------------------------------------

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// `git rev-parse --short HEAD`, or "unknown" outside git; rebuilt when HEAD moves.
fn git_revision() {
    let revision = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FUSEGATE_GIT_REVISION={revision}");
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        // Only files that exist: a missing one would make cargo rerun this on every build.
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

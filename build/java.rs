//! Reading the Java API: its `native` methods (as JNI signatures) and public integer constants.

use crate::tokens::{
    closing, eval, ident, is_ident, is_punct, split_commas, text, tokenize, Token,
};
use crate::{JAVA_DIR, JAVA_PACKAGE, NATIVE_CLASS, REGISTRATION};
use std::collections::BTreeMap;

pub struct JavaNative {
    pub signature: String,
    pub at: String,
}

pub struct JavaConstant {
    pub expr: String,
    pub value: Option<i128>,
    pub at: String,
}

/// What the Java API declares: natives by name, public constants by `Class.NAME`.
pub struct Java {
    pub natives: BTreeMap<String, JavaNative>,
    pub constants: BTreeMap<String, JavaConstant>,
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

pub fn read_java(problems: &mut Vec<String>) -> Java {
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

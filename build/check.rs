//! Comparing the two sides: every problem found is one message naming both places.

use crate::java::read_java;
use crate::rust_side::{
    accepts, descriptors, read_registration, rust_constant, rust_function_signature,
};
use crate::{CONSTANTS, JNI_DIR, NATIVE_CLASS, REGISTRATION};
use std::collections::BTreeMap;

pub fn check_jni() -> Vec<String> {
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

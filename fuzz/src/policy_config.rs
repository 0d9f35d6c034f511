//! The policy file parser on arbitrary text: never a panic; an accepted file is a table the
//! policy engine takes (unique uids, normalized grant paths) and can decide with.

use fusegate::policy::{parse_config, Op, Policy, Target};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let table = match parse_config(text) {
        Ok(t) => t,
        Err(e) => {
            // Every refusal names a line inside the file.
            let msg = e.to_string();
            assert!(!msg.is_empty());
            return;
        }
    };
    let uids: Vec<u32> = table.apps.iter().map(|a| a.uid).collect();
    let mut sorted = uids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), uids.len(), "duplicate uid accepted");
    let policy = Policy::new(table);
    policy
        .try_replace(parse_config(text).expect("parses twice"))
        .expect("accepted twice");
    let snap = policy.snapshot();
    let paths: &[&[u8]] = &[
        b"",
        b"DCIM/a.jpg",
        b"Android/data/com.x/f",
        b"Download/d.pdf",
    ];
    for &uid in uids.iter().chain(&[0, 10_000, 99_000]) {
        for path in paths {
            let target = Target {
                path,
                is_dir: false,
                owner: None,
                under_nomedia: false,
            };
            for op in [Op::Lookup, Op::Read, Op::Write, Op::Create, Op::Delete] {
                let _ = snap.decide(uid, op, &target);
            }
        }
    }
}

//! What every answer of `dispatch_one` must look like, whatever the request was.

use fusegate::fuse::abi::{self, opcode};

/// Requests the kernel expects no answer to.
pub fn expects_no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT | opcode::NOTIFY_REPLY
    )
}

/// Checks the framing of `reply` (what `dispatch_one` returned for `request`) and returns the
/// errno it carries (0 for success). Panics, which the fuzzer reports, on a malformed answer.
pub fn check(request: &[u8], reply: Option<&[u8]>) -> i32 {
    let Some(h) = abi::read_pod::<abi::InHeader>(request) else {
        assert!(reply.is_none(), "answered a request without a header");
        return 0;
    };
    if expects_no_reply(h.opcode) {
        assert!(
            reply.is_none(),
            "answered opcode {} which expects no reply",
            h.opcode
        );
        return 0;
    }
    let reply = reply.unwrap_or_else(|| panic!("no answer to opcode {}", h.opcode));
    let out = abi::read_pod::<abi::OutHeader>(reply).expect("reply shorter than its header");
    assert_eq!(out.len as usize, reply.len(), "reply length field is wrong");
    assert_eq!(out.unique, h.unique, "reply to the wrong request");
    assert!(
        out.error <= 0 && out.error > -4096,
        "error {} is not 0 or -errno",
        out.error
    );
    if out.error != 0 {
        assert_eq!(reply.len(), 16, "an error reply carries a payload");
    }
    -out.error
}

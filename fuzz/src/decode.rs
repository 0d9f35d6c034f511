//! The request decoder on arbitrary bytes: it must never panic or read out of bounds, and every
//! request (well-formed or not) must be answered with a correctly framed reply, or not at all
//! when the kernel expects none. The filesystem behind is the trait's defaults (ENOSYS), so
//! this target is about the protocol layer alone.

use crate::frame;
use fusegate::fuse::reply::ReplyBuf;
use fusegate::fuse::request::{Operation, Request};
use fusegate::fuse::{dispatch_one, Filesystem, SessionStats};
use std::cell::RefCell;

struct Nothing;
impl Filesystem for Nothing {}

thread_local! {
    static REPLY: RefCell<ReplyBuf> = RefCell::new(ReplyBuf::new(1 << 20));
}

pub fn run(data: &[u8]) {
    if let Ok(req) = Request::parse(data) {
        assert_eq!(req.header.len as usize, data.len());
        match req.op {
            Operation::BatchForget { items } => {
                let n = items.count();
                assert!(n * 16 <= data.len());
            }
            Operation::Write { arg, data: payload } => {
                assert_eq!(arg.size as usize, payload.len());
            }
            _ => {}
        }
    }
    let stats = SessionStats::default();
    REPLY.with(|r| {
        let mut r = r.borrow_mut();
        let reply = dispatch_one(&Nothing, data, &mut r, &stats);
        frame::check(data, reply);
    });
}

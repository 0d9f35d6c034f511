//! FUSE over io_uring (protocol 7.42, Linux 6.14+): the second transport of a session.
//!
//! The kernel keeps one queue per possible CPU and hands a request to the queue of the CPU the
//! caller runs on. Each queue here is one thread pinned to that CPU with its own ring and a few
//! entries; an entry is a header buffer and a payload buffer the kernel fills with a request.
//! The thread answers in the same buffers and, with `COMMIT_AND_FETCH`, hands the entry back in
//! the same system call that waits for the next request: no cross-CPU wake-up, one syscall per
//! request. FORGET, INTERRUPT and notifications stay on `/dev/fuse` (the session keeps its
//! readers). Decoding and dispatch are the session's, shared with the `read()` transport.

use super::abi::{self, uring_cmd, InHeader, OutHeader, UringCmdReq, UringEntInOut};
use super::channel::Channel;
use super::filesystem::Filesystem;
use super::reply::ReplyBuf;
use super::session::{self, SessionStats, Stopper};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

/// Entries per queue. One thread serves a queue, so more entries only let the kernel park
/// requests in our buffers instead of its list; a few cover bursts of background requests.
pub const QUEUE_DEPTH: usize = 4;

/// `user_data` of the poll on the stop eventfd (entry indices are small).
const STOP: u64 = u64::MAX;
const IN_HEADER: usize = size_of::<InHeader>();
const OUT_HEADER: usize = size_of::<OutHeader>();
/// Where `fuse_uring_ent_in_out` sits in the header buffer.
const ENT_IN_OUT: usize = abi::URING_IN_OUT_HEADER_SZ + abi::URING_OP_IN_OUT_SZ;
/// Room before the payload for the in-header and op header, so that a request can be decoded as
/// one contiguous message (as read() delivers it) without copying its payload.
const PREFIX: usize = IN_HEADER + abi::URING_OP_IN_OUT_SZ;

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Why the io_uring transport cannot serve this session, or `None` if the kernel offers it.
pub fn unavailable(minor: u32, offered: u64) -> Option<String> {
    if minor < abi::MINOR_IO_URING {
        return Some(format!(
            "kernel FUSE protocol 7.{minor} predates FUSE over io_uring (7.42, Linux 6.14)"
        ));
    }
    if offered & abi::init_flags::OVER_IO_URING != 0 {
        return None;
    }
    Some(match std::fs::read_to_string(PARAM) {
        Ok(v) if v.trim() == "Y" => "the kernel did not offer FUSE_OVER_IO_URING".to_string(),
        Ok(_) => format!("fuse.enable_uring is off (echo Y > {PARAM})"),
        Err(_) => "the kernel has no FUSE over io_uring (CONFIG_FUSE_IO_URING)".to_string(),
    })
}

/// Ids of the possible CPUs: the kernel sizes its queue array by their count and picks a
/// queue by CPU id, so every id needs a registered queue before the ring is used.
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_else(|| {
            // SAFETY: sysconf has no pointer arguments.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
            n.max(1) as usize
        })
}

/// Counts the CPUs in a kernel cpu list such as `0-3,8-11`.
fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut n = 0;
    for part in s.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let a = part.parse::<usize>().ok()?;
                (a, a)
            }
        };
        n += b.checked_sub(a)? + 1;
    }
    (n > 0).then_some(n)
}

/// One ring entry's memory. The kernel writes into it from our queue thread's context only,
/// so it must stay allocated until that thread has exited (see `Pool::start`).
struct Entry {
    header: Box<[u8]>,
    /// `PREFIX` bytes for reassembly, then the payload buffer the kernel sees.
    buf: Box<[u8]>,
    commit_id: u64,
    registered: bool,
}

/// A queue: its ring and entries, built before INIT is answered and then moved to its thread.
pub struct Queue {
    qid: u16,
    /// The session's /dev/fuse fd, open until every queue thread has been joined. Not a
    /// registered (fixed) file: the ring's file table would hold the device until the ring is
    /// freed, the ring waits for its commands, and those end only when the connection is
    /// aborted, which needs the device released; a stopped attached session then hung.
    dev: RawFd,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    entries: Vec<Entry>,
}

/// All queues of a session, ready to register.
pub struct Pool {
    queues: Vec<Queue>,
}

impl Pool {
    /// Creates one ring per possible CPU with `QUEUE_DEPTH` entries whose payload buffers hold
    /// `payload` bytes, and registers the device fd in each ring. Fails (and then nothing was
    /// promised to the kernel) if io_uring is unusable, e.g. disabled by sysctl.
    pub fn new(chan: &Channel, payload: usize) -> io::Result<Pool> {
        let queues = (0..possible_cpus())
            .map(|qid| Queue::new(qid as u16, chan, payload))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Pool { queues })
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    pub fn into_queues(self) -> Vec<Queue> {
        self.queues
    }
}

impl Queue {
    fn new(qid: u16, chan: &Channel, payload: usize) -> io::Result<Queue> {
        let depth = QUEUE_DEPTH as u32 + 1; // and the stop poll
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(depth * 2)
            .build(depth)?;
        let entries = (0..QUEUE_DEPTH)
            .map(|_| Entry {
                header: vec![0u8; abi::URING_REQ_HEADER_SZ].into_boxed_slice(),
                // Zeroed allocation: pages the kernel never writes stay unbacked.
                buf: vec![0u8; PREFIX + payload].into_boxed_slice(),
                commit_id: 0,
                registered: false,
            })
            .collect();
        Ok(Queue {
            qid,
            dev: chan.raw_fd(),
            ring,
            entries,
        })
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Serves this queue until the kernel tears its entries down (unmount, abort) or `stopper`
    /// fires. Returns the entries, which the caller must keep until this thread has exited.
    pub fn serve<F: Filesystem + ?Sized>(
        mut self,
        fs: &F,
        stopper: &Stopper,
        stats: &SessionStats,
    ) -> Held {
        pin_to_cpu(self.qid as usize);
        // The iovecs the kernel reads at REGISTER: built here, in the thread, and never moved.
        let iovs: Vec<[libc::iovec; 2]> = self
            .entries
            .iter_mut()
            .map(|e| {
                let payload = &mut e.buf[PREFIX..];
                [
                    libc::iovec {
                        iov_base: e.header.as_mut_ptr().cast(),
                        iov_len: e.header.len(),
                    },
                    libc::iovec {
                        iov_base: payload.as_mut_ptr().cast(),
                        iov_len: payload.len(),
                    },
                ]
            })
            .collect();
        let mut reply = ReplyBuf::new(session::BUFFER_SIZE);
        let mut live = self.entries.len();
        let (qid, dev) = (self.qid, self.dev);
        {
            let (submitter, mut sq, mut cq) = self.ring.split();
            let stop_poll = opcode::PollAdd::new(types::Fd(stopper.raw_fd()), libc::POLLIN as u32)
                .build()
                .user_data(STOP);
            // SAFETY: the poll names our eventfd, which the session keeps open longer than
            // this thread; no buffer is involved.
            let mut ok = unsafe { sq.push(&stop_poll.into()) }.is_ok();
            for (i, iov) in iovs.iter().enumerate() {
                let sqe = command(dev, qid, uring_cmd::REGISTER, 0, i, Some(iov));
                // SAFETY: the iovecs and the buffers they point to live in `iovs` and
                // `self.entries` until this function returns, and the entries are handed back
                // to the caller, who keeps them until this thread is gone.
                ok &= unsafe { sq.push(&sqe) }.is_ok();
            }
            sq.sync();
            if !ok {
                log::error!("io_uring queue {qid}: submission queue too small");
                live = 0;
            }
            let mut stopping = false;
            while live > 0 {
                match submitter.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                    Err(e) => {
                        log::error!("io_uring queue {qid}: {e}");
                        break;
                    }
                }
                // The submission queue's cached head must move past what was just submitted
                // before anything is pushed: a stale head counts those entries again, and
                // the queue looks full with half its room free.
                sq.sync();
                cq.sync();
                for cqe in &mut cq {
                    let tag = cqe.user_data();
                    if tag == STOP {
                        // Answer what this batch still holds before leaving.
                        stopping = true;
                        continue;
                    }
                    let i = tag as usize;
                    let Some(ent) = self.entries.get_mut(i) else {
                        continue;
                    };
                    let next = match cqe.result() {
                        0 => {
                            ent.registered = true;
                            answer(ent, fs, &mut reply, stats);
                            command(
                                dev,
                                qid,
                                uring_cmd::COMMIT_AND_FETCH,
                                ent.commit_id,
                                i,
                                None,
                            )
                        }
                        // Not taken yet (e.g. INIT still being processed): try again.
                        r if r == -libc::EAGAIN || r == -libc::EINTR => {
                            if ent.registered {
                                command(
                                    dev,
                                    qid,
                                    uring_cmd::COMMIT_AND_FETCH,
                                    ent.commit_id,
                                    i,
                                    None,
                                )
                            } else {
                                command(dev, qid, uring_cmd::REGISTER, 0, i, Some(&iovs[i]))
                            }
                        }
                        r => {
                            let e = io::Error::from_raw_os_error(-r);
                            match -r {
                                // Unmount, abort, or our own stop: the normal end.
                                libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED => {
                                    log::debug!("io_uring queue {qid} entry {i}: {e}")
                                }
                                _ if !ent.registered => log::warn!(
                                    "io_uring queue {qid}: registering an entry failed ({e}); \
                                     the kernel falls back to /dev/fuse"
                                ),
                                _ => {
                                    // A refused commit (e.g. its request was already ended)
                                    // leaves the kernel's entry stranded: register the buffers
                                    // again as a new one, or this CPU's queue would shrink.
                                    log::warn!(
                                        "io_uring queue {qid} entry {i}: commit refused ({e}); \
                                         registering it again"
                                    );
                                    ent.registered = false;
                                    let again = command(
                                        dev,
                                        qid,
                                        uring_cmd::REGISTER,
                                        0,
                                        i,
                                        Some(&iovs[i]),
                                    );
                                    // SAFETY: as for REGISTER above.
                                    if unsafe { sq.push(&again) }.is_ok() {
                                        continue;
                                    }
                                }
                            }
                            live -= 1;
                            continue;
                        }
                    };
                    // SAFETY: as for REGISTER above; COMMIT_AND_FETCH names the same buffers.
                    if unsafe { sq.push(&next) }.is_err() {
                        // Cannot happen: each entry has at most one command in flight and the
                        // ring has room for all of them. Were it to, the commit carries an
                        // answer a caller waits for: make room by submitting, never drop it.
                        log::error!("io_uring queue {qid}: submission queue full");
                        sq.sync();
                        let pushed = submitter.submit().is_ok() && {
                            sq.sync();
                            // SAFETY: as above.
                            unsafe { sq.push(&next) }.is_ok()
                        };
                        if !pushed {
                            live -= 1;
                        }
                    }
                }
                sq.sync();
                if stopping || stopper.is_stopped() {
                    // Hand the answered entries back: a request left unanswered would wait
                    // for the connection's abort.
                    if let Err(e) = submitter.submit() {
                        log::debug!("io_uring queue {qid}: final submit: {e}");
                    }
                    break;
                }
            }
        }
        // The ring and the memory go back to the caller, to be dropped after this thread has
        // exited: its exit cancels the commands it submitted (the kernel may copy a request
        // into an entry until then), and the ring must still be open for that.
        Held(self.ring, self.entries)
    }
}

/// A queue's ring and entry memory, returned by [`Queue::serve`], to be dropped only after its
/// thread has exited.
pub struct Held(
    #[allow(dead_code)] IoUring<squeue::Entry128, cqueue::Entry>,
    #[allow(dead_code)] Vec<Entry>,
);

/// A URING_CMD SQE for entry `index` of queue `qid`.
fn command(
    dev: RawFd,
    qid: u16,
    cmd_op: u32,
    commit_id: u64,
    index: usize,
    iov: Option<&[libc::iovec; 2]>,
) -> squeue::Entry128 {
    let req = UringCmdReq {
        flags: 0,
        commit_id,
        qid,
        padding: [0; 6],
    };
    let mut cmd = [0u8; 80];
    cmd[..size_of::<UringCmdReq>()].copy_from_slice(abi::as_bytes(&req));
    let mut op = opcode::UringCmd80::new(types::Fd(dev), cmd_op).cmd(cmd);
    if let Some(iov) = iov {
        op = op.addr(Some(iov.as_ptr() as u64));
    }
    let mut sqe = op.build().user_data(index as u64);
    if iov.is_some() {
        set_len(&mut sqe, 2);
    }
    sqe
}

/// Sets `sqe->len` (REGISTER passes the iovec count there), which the crate's builder does
/// not expose.
fn set_len(sqe: &mut squeue::Entry128, len: u32) {
    const LEN_OFFSET: usize = 24; // struct io_uring_sqe: opcode..off (8), addr (8), then len
    const _: () = assert!(size_of::<squeue::Entry128>() == 128);
    // SAFETY: Entry128 is #[repr(C)] over the kernel's 128-byte io_uring_sqe (asserted above),
    // so its bytes may be viewed as an array; `len` is the u32 at offset 24 of that layout.
    let raw = unsafe { &mut *(sqe as *mut squeue::Entry128).cast::<[u8; 128]>() };
    raw[LEN_OFFSET..LEN_OFFSET + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Decodes the request in `ent`, dispatches it, and leaves the answer in `ent` for
/// COMMIT_AND_FETCH.
fn answer<F: Filesystem + ?Sized>(
    ent: &mut Entry,
    fs: &F,
    reply: &mut ReplyBuf,
    stats: &SessionStats,
) {
    let io: UringEntInOut = abi::read_pod(&ent.header[ENT_IN_OUT..]).unwrap_or_default();
    ent.commit_id = io.commit_id;
    let header: InHeader = abi::read_pod(&ent.header).unwrap_or_default();
    let payload = io.payload_sz as usize;
    // The first argument (the opcode's fixed header) is in the op area, the rest in the
    // payload; the request's length says how big the first one is.
    let op_len = (header.len as usize)
        .checked_sub(IN_HEADER + payload)
        .filter(|&n| n <= abi::URING_OP_IN_OUT_SZ && PREFIX + payload <= ent.buf.len());
    let msg = match op_len {
        Some(op_len) => {
            let start = PREFIX - op_len - IN_HEADER;
            ent.buf[start..start + IN_HEADER].copy_from_slice(&ent.header[..IN_HEADER]);
            let op_at = abi::URING_IN_OUT_HEADER_SZ;
            ent.buf[PREFIX - op_len..PREFIX].copy_from_slice(&ent.header[op_at..op_at + op_len]);
            super::dispatch::dispatch_one(fs, &ent.buf[start..PREFIX + payload], reply, stats)
        }
        None => {
            stats
                .malformed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!(
                "malformed io_uring request: length {} with {payload} payload bytes",
                header.len
            );
            None
        }
    };
    // Every fetched entry must be committed to come back; a request that wants no answer
    // (none should arrive here) or could not be read is completed with an error.
    let msg = match msg {
        Some(m) => m,
        None => {
            reply.reset();
            reply.finish(ent.commit_id, -libc::EIO)
        }
    };
    let body = &msg[OUT_HEADER..];
    let room = ent.buf.len() - PREFIX;
    let (out, body) = if body.len() <= room {
        (&msg[..OUT_HEADER], body)
    } else {
        log::error!("reply of {} bytes exceeds the ring payload", body.len());
        reply.reset();
        (reply.finish(ent.commit_id, -libc::EIO), &[][..])
    };
    ent.header[..OUT_HEADER].copy_from_slice(out);
    ent.buf[PREFIX..PREFIX + body.len()].copy_from_slice(body);
    let io = UringEntInOut {
        payload_sz: body.len() as u32,
        ..io
    };
    ent.header[ENT_IN_OUT..ENT_IN_OUT + size_of::<UringEntInOut>()]
        .copy_from_slice(abi::as_bytes(&io));
}

/// Runs the calling thread on `cpu` only: requests issued there come to this queue, and
/// serving them on the same CPU avoids the cross-CPU wake-ups that dominate a round trip.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds for cpu <
    // CPU_SETSIZE (checked), and sched_setaffinity only reads the set.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            log::debug!(
                "pinning io_uring queue thread to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers LOOKUP with the name's length as node id and WRITE with the sum of its bytes,
    /// so a test sees exactly what the decoder handed over.
    struct Echo;
    impl Filesystem for Echo {
        fn lookup(
            &self,
            _: &super::super::Ctx,
            parent: u64,
            name: super::super::Name<'_>,
        ) -> super::super::filesystem::Result<super::super::Entry> {
            Ok(super::super::Entry {
                nodeid: parent * 1000 + name.as_bytes().len() as u64,
                ..Default::default()
            })
        }
        fn write(
            &self,
            _: &super::super::Ctx,
            _: u64,
            fh: u64,
            offset: u64,
            data: &[u8],
            _: u32,
        ) -> super::super::filesystem::Result<u32> {
            assert_eq!((fh, offset), (7, 4096));
            Ok(data.iter().map(|&b| b as u32).sum())
        }
    }

    /// Lays a request out as the kernel does in a ring entry: in-header, first argument in the
    /// op area, the rest in the payload.
    fn entry_with(opcode: u32, op_in: &[u8], payload: &[u8]) -> Entry {
        let mut e = Entry {
            header: vec![0u8; abi::URING_REQ_HEADER_SZ].into_boxed_slice(),
            buf: vec![0u8; PREFIX + 8192].into_boxed_slice(),
            commit_id: 0,
            registered: true,
        };
        let h = InHeader {
            len: (IN_HEADER + op_in.len() + payload.len()) as u32,
            opcode,
            unique: 42,
            nodeid: 3,
            ..Default::default()
        };
        e.header[..IN_HEADER].copy_from_slice(abi::as_bytes(&h));
        let op_at = abi::URING_IN_OUT_HEADER_SZ;
        e.header[op_at..op_at + op_in.len()].copy_from_slice(op_in);
        e.buf[PREFIX..PREFIX + payload.len()].copy_from_slice(payload);
        let io = UringEntInOut {
            commit_id: 42,
            payload_sz: payload.len() as u32,
            ..Default::default()
        };
        e.header[ENT_IN_OUT..ENT_IN_OUT + size_of::<UringEntInOut>()]
            .copy_from_slice(abi::as_bytes(&io));
        e
    }

    fn answered(e: &Entry) -> (OutHeader, Vec<u8>) {
        let out: OutHeader = abi::read_pod(&e.header).unwrap();
        let io: UringEntInOut = abi::read_pod(&e.header[ENT_IN_OUT..]).unwrap();
        let body = e.buf[PREFIX..PREFIX + io.payload_sz as usize].to_vec();
        (out, body)
    }

    #[test]
    fn ring_requests_are_decoded_and_answered_in_place() {
        let stats = SessionStats::default();
        let mut reply = ReplyBuf::new(session::BUFFER_SIZE);
        // LOOKUP: no op header (the kernel sends a zero-size first argument), name in payload.
        let mut e = entry_with(abi::opcode::LOOKUP, &[], b"DCIM\0");
        answer(&mut e, &Echo, &mut reply, &stats);
        let (out, body) = answered(&e);
        assert_eq!((out.unique, out.error), (42, 0));
        assert_eq!(body.len(), size_of::<abi::EntryOut>());
        let entry: abi::EntryOut = abi::read_pod(&body).unwrap();
        assert_eq!(entry.nodeid, 3004);
        assert_eq!(e.commit_id, 42);

        // WRITE: fuse_write_in in the op area, the data in the payload.
        let arg = abi::WriteIn {
            fh: 7,
            offset: 4096,
            size: 3,
            ..Default::default()
        };
        let mut e = entry_with(abi::opcode::WRITE, abi::as_bytes(&arg), &[1, 2, 3]);
        answer(&mut e, &Echo, &mut reply, &stats);
        let (out, body) = answered(&e);
        assert_eq!(out.error, 0);
        let w: abi::WriteOut = abi::read_pod(&body).unwrap();
        assert_eq!(w.size, 6);

        // An unsupported opcode gets its errno, with no payload.
        let mut e = entry_with(abi::opcode::GETATTR, &[0u8; 16], &[]);
        answer(&mut e, &Echo, &mut reply, &stats);
        let (out, body) = answered(&e);
        assert_eq!((out.unique, out.error), (42, -libc::ENOSYS));
        assert!(body.is_empty());
    }

    #[test]
    fn an_impossible_length_is_an_error_not_a_panic() {
        let stats = SessionStats::default();
        let mut reply = ReplyBuf::new(session::BUFFER_SIZE);
        let mut e = entry_with(abi::opcode::LOOKUP, &[], b"x\0");
        // Claims more than header + op area + payload can hold.
        e.header[..4].copy_from_slice(&10_000u32.to_ne_bytes());
        answer(&mut e, &Echo, &mut reply, &stats);
        let (out, _) = answered(&e);
        assert_eq!((out.unique, out.error), (42, -libc::EIO));
        assert_eq!(
            stats.malformed.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(8));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn unavailable_names_the_reason() {
        assert!(unavailable(41, u64::MAX).unwrap().contains("7.41"));
        assert!(unavailable(42, abi::init_flags::OVER_IO_URING).is_none());
        assert!(unavailable(45, 0).is_some());
    }

    #[test]
    fn register_sqe_carries_the_iovec_count() {
        let iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        let mut sqe = command(5, 1, uring_cmd::REGISTER, 0, 3, Some(&iov));
        // SAFETY: as in set_len: a repr(C) 128-byte SQE viewed as bytes.
        let raw = unsafe { &*(&mut sqe as *mut squeue::Entry128).cast::<[u8; 128]>() };
        assert_eq!(u32::from_ne_bytes(raw[24..28].try_into().unwrap()), 2);
        assert_eq!(raw[0], io_uring::opcode::UringCmd80::CODE);
        let req: UringCmdReq = abi::read_pod(&raw[48..]).unwrap();
        assert_eq!(req.qid, 1);
        assert_eq!(sqe.get_user_data(), 3);
    }
}

//! INIT: what the kernel offers, what we ask for, and the transport chosen (the io_uring
//! queues are built before INIT is answered).

use super::abi::{self, init_flags as F};
use super::channel::Channel;
use super::reply::ReplyBuf;
use super::request::{Operation, Request};
use super::session::{
    IoUringMode, Negotiated, SessionConfig, SessionError, SessionStats, Stopper, Transport,
    BUFFER_SIZE, MAX_WRITE,
};
use super::uring;
use std::sync::atomic::Ordering::Relaxed;

pub(super) fn negotiate(
    chan: &Channel,
    stopper: &Stopper,
    config: &SessionConfig,
    stats: &SessionStats,
    save: Option<&(dyn Fn(&Negotiated) + Send + Sync)>,
) -> Result<(Negotiated, Option<uring::Pool>), SessionError> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut reply = ReplyBuf::new(4096);
    loop {
        let n = match chan.receive(&mut buf) {
            Ok(n) => n,
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    if !stopper.wait(chan) {
                        return Err(SessionError::EndedBeforeInit);
                    }
                    continue;
                }
                Some(libc::EINTR) | Some(libc::ENOENT) => continue,
                Some(libc::ENODEV) => return Err(SessionError::EndedBeforeInit),
                _ => return Err(e.into()),
            },
        };
        let req = match Request::parse(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("malformed request before INIT: {e}");
                stats.malformed.fetch_add(1, Relaxed);
                continue;
            }
        };
        stats.count(req.header.opcode);
        let Operation::Init(init) = req.op else {
            reply.reset();
            let _ = chan.send(reply.finish(req.header.unique, -libc::EIO));
            continue;
        };
        if init.major < abi::KERNEL_VERSION {
            reply.reset();
            let _ = chan.send(reply.finish(req.header.unique, -libc::EPROTO));
            return Err(SessionError::Protocol(init.major, init.minor));
        }
        if init.major > abi::KERNEL_VERSION {
            // Tell the kernel our major; it sends a new INIT for it.
            reply.reset();
            reply.push(&abi::InitOut {
                major: abi::KERNEL_VERSION,
                minor: abi::KERNEL_MINOR_VERSION,
                ..Default::default()
            });
            let _ = chan.send(reply.finish(req.header.unique, 0));
            continue;
        }
        let (mut out, mut negotiated) = init_reply(&init, config);
        // A server that must survive restarts serves over read() only: io_uring queues die
        // with the process that registered them.
        let uring_mode = if save.is_some() {
            IoUringMode::Off
        } else {
            config.io_uring
        };
        let pool = match choose_uring(&init, chan, uring_mode) {
            Ok(pool) => pool,
            Err(reason) => {
                reply.reset();
                let _ = chan.send(reply.finish(req.header.unique, -libc::EPROTO));
                return Err(SessionError::IoUringUnavailable(reason));
            }
        };
        if let Some(pool) = &pool {
            out.flags2 |= (F::OVER_IO_URING >> 32) as u32;
            negotiated.flags |= F::OVER_IO_URING;
            negotiated.transport = Transport::IoUring {
                queues: pool.queue_count(),
                depth: uring::QUEUE_DEPTH,
            };
        }
        if let Some(save) = save {
            // Saved before the kernel hears the answer: a server that starts later must never
            // wait for an INIT that will not come.
            save(&negotiated);
        }
        reply.reset();
        reply.push(&out);
        // Kernels before 7.23 expect the 24-byte compat reply.
        let msg = reply.finish(req.header.unique, 0);
        let msg = if init.minor < 23 {
            &msg[..16 + 24]
        } else {
            msg
        };
        let mut msg = msg.to_vec();
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        chan.send(&msg)?;
        return Ok((negotiated, pool));
    }
}

/// The io_uring queues to serve with, `None` for `read()`, or why `--io-uring on` cannot be
/// met. The rings are built before INIT is answered: once the kernel has accepted
/// FUSE_OVER_IO_URING, requests wait until every queue has registered.
fn choose_uring(
    init: &abi::InitIn,
    chan: &Channel,
    mode: IoUringMode,
) -> Result<Option<uring::Pool>, String> {
    if mode == IoUringMode::Off {
        return Ok(None);
    }
    let offered = offered_flags(init);
    let built = match uring::unavailable(init.minor, offered) {
        Some(reason) => Err(reason),
        None => {
            // The kernel requires room for max(max_write, max_pages pages).
            // SAFETY: sysconf has no pointer arguments.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            let payload = (MAX_WRITE as usize).max((MAX_WRITE as usize / 4096) * page);
            uring::Pool::new(chan, payload).map_err(|e| format!("setting up io_uring: {e}"))
        }
    };
    match built {
        Ok(pool) => Ok(Some(pool)),
        Err(reason) if mode == IoUringMode::On => Err(reason),
        Err(reason) => {
            log::info!("not using io_uring: {reason}");
            Ok(None)
        }
    }
}

/// The flags we want, limited to what the kernel offered.
pub(super) fn init_reply(init: &abi::InitIn, config: &SessionConfig) -> (abi::InitOut, Negotiated) {
    let offered = offered_flags(init);
    let minor = init.minor.min(abi::KERNEL_MINOR_VERSION);
    let mut wanted = F::ASYNC_READ
        | F::ATOMIC_O_TRUNC
        | F::BIG_WRITES
        | F::DO_READDIRPLUS
        | F::READDIRPLUS_AUTO
        | F::PARALLEL_DIROPS
        | F::MAX_PAGES
        | F::ASYNC_DIO
        | F::AUTO_INVAL_DATA
        | F::CACHE_SYMLINKS
        // The kernel then stops asking for security.capability before every write (one round
        // trip per write(2) otherwise, passthrough included) and leaves suid clearing to us.
        | F::HANDLE_KILLPRIV_V2
        | F::INIT_EXT;
    // Passthrough needs 7.40, and is silently dropped by the kernel with a writeback cache,
    // which we therefore never ask for.
    if config.passthrough && minor >= abi::MINOR_PASSTHROUGH {
        wanted |= F::PASSTHROUGH;
    }
    let flags = wanted & offered;
    let passthrough = flags & F::PASSTHROUGH != 0;
    let out = abi::InitOut {
        major: abi::KERNEL_VERSION,
        minor,
        max_readahead: init.max_readahead,
        flags: flags as u32,
        max_background: 64,
        congestion_threshold: 48,
        max_write: MAX_WRITE,
        time_gran: 1,
        max_pages: max_pages(page_size()),
        map_alignment: 0,
        flags2: (flags >> 32) as u32,
        // ext4/f2fs are at depth 0; 1 lets the kernel stack us on them.
        max_stack_depth: if passthrough { 1 } else { 0 },
        request_timeout: 0,
        unused: [0; 11],
    };
    let negotiated = Negotiated {
        major: abi::KERNEL_VERSION,
        minor,
        flags,
        max_write: MAX_WRITE,
        max_readahead: init.max_readahead,
        passthrough,
        resend: offered & F::HAS_RESEND != 0,
        transport: Transport::DevRead,
    };
    (out, negotiated)
}

/// The kernel builds READ (and direct I/O) requests of up to `max_pages` of its own pages, so
/// the offer must be counted in the running kernel's pages: 256 pages of 16 KiB would be 4 MiB,
/// four times what a request buffer holds.
fn max_pages(page_size: usize) -> u16 {
    (MAX_WRITE as usize / page_size.max(4096)).clamp(1, u16::MAX as usize) as u16
}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers; it cannot fail for _SC_PAGESIZE.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Every flag the kernel offered, the second word included when it says it has one.
fn offered_flags(init: &abi::InitIn) -> u64 {
    init.flags as u64
        | if init.flags as u64 & F::INIT_EXT != 0 {
            (init.flags2 as u64) << 32
        } else {
            0
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_in(flags: u64, minor: u32) -> abi::InitIn {
        abi::InitIn {
            major: 7,
            minor,
            max_readahead: 131072,
            flags: flags as u32,
            flags2: (flags >> 32) as u32,
            unused: [0; 11],
        }
    }

    #[test]
    fn init_negotiation_table() {
        let all = u64::MAX;
        let cfg_pt = SessionConfig {
            threads: 1,
            passthrough: true,
            io_uring: IoUringMode::Auto,
        };
        let cfg_nopt = SessionConfig {
            threads: 1,
            passthrough: false,
            io_uring: IoUringMode::Auto,
        };
        // (offered flags, kernel minor, config, expect passthrough, expect minor)
        let cases: &[(u64, u32, &SessionConfig, bool, u32)] = &[
            (all, 45, &cfg_pt, true, 45),
            (all, 50, &cfg_pt, true, 45),
            (all, 41, &cfg_pt, true, 41),
            (all, 39, &cfg_pt, false, 39),
            (all, 45, &cfg_nopt, false, 45),
            (all & !F::PASSTHROUGH, 45, &cfg_pt, false, 45),
            (all & !F::INIT_EXT, 45, &cfg_pt, false, 45),
        ];
        for &(offered, minor, cfg, pt, want_minor) in cases {
            let (out, neg) = init_reply(&init_in(offered, minor), cfg);
            assert_eq!(neg.passthrough, pt, "offered {offered:x} minor {minor}");
            assert_eq!(out.minor, want_minor);
            assert_eq!(out.max_stack_depth, if pt { 1 } else { 0 });
            let got = out.flags as u64 | (out.flags2 as u64) << 32;
            assert_eq!(got & F::WRITEBACK_CACHE, 0, "never a writeback cache");
            assert_eq!(got & !offered, 0, "only what the kernel offered");
            assert_eq!(out.max_write, MAX_WRITE);
        }
    }

    #[test]
    fn max_pages_never_exceed_a_request_buffer() {
        assert_eq!(max_pages(4096), 256);
        assert_eq!(max_pages(16384), 64);
        assert_eq!(max_pages(65536), 16);
        for page in [4096usize, 16384, 65536] {
            assert!(max_pages(page) as usize * page <= MAX_WRITE as usize);
        }
        let (out, _) = init_reply(
            &init_in(u64::MAX, 41),
            &SessionConfig {
                threads: 1,
                passthrough: true,
                io_uring: Default::default(),
            },
        );
        assert_eq!(out.max_pages, max_pages(page_size()));
    }

    #[test]
    fn nothing_is_asked_that_was_not_offered() {
        let (out, neg) = init_reply(
            &init_in(F::ASYNC_READ, 45),
            &SessionConfig {
                threads: 1,
                passthrough: true,
                io_uring: IoUringMode::Auto,
            },
        );
        assert_eq!(out.flags as u64, F::ASYNC_READ);
        assert_eq!(out.flags2, 0);
        assert!(!neg.passthrough);
    }
}

//! Bounds-checked decoding of one request read from `/dev/fuse`.
//!
//! The kernel is trusted to speak the protocol, but a daemon that panics or reads out of bounds
//! on a malformed buffer takes every app's storage down with it, so every length is checked and
//! a bad buffer becomes a [`DecodeError`] (answered with an errno), never a panic.

use super::abi::{self, opcode, Pod};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("buffer of {0} bytes is shorter than the request header")]
    ShortHeader(usize),
    #[error("header says {declared} bytes but {actual} were read")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("{op} payload too short: need {need} bytes, have {have}")]
    ShortPayload {
        op: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{op}: name is not NUL-terminated")]
    Unterminated { op: &'static str },
    #[error("{op}: invalid name (empty, or contains '/')")]
    BadName { op: &'static str },
    #[error("{op}: data length {declared} does not match payload {actual}")]
    DataLength {
        op: &'static str,
        declared: usize,
        actual: usize,
    },
}

impl DecodeError {
    /// The errno the kernel gets for a request we could not decode.
    pub fn errno(&self) -> i32 {
        match self {
            DecodeError::BadName { .. } => libc::EINVAL,
            _ => libc::EIO,
        }
    }
}

/// A path component as the kernel sent it: non-empty, no `/`, no NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a>(&'a [u8]);

impl<'a> Name<'a> {
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.contains(&b'/') || bytes.contains(&0) {
            None
        } else {
            Some(Name(bytes))
        }
    }
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
    pub fn is_dot_or_dotdot(&self) -> bool {
        self.0 == b"." || self.0 == b".."
    }
}

/// The list of a BATCH_FORGET, iterated without allocating.
#[derive(Debug, Clone, Copy)]
pub struct ForgetList<'a>(&'a [u8]);

impl<'a> Iterator for ForgetList<'a> {
    type Item = abi::ForgetOne;
    fn next(&mut self) -> Option<abi::ForgetOne> {
        let one = abi::read_pod::<abi::ForgetOne>(self.0)?;
        self.0 = &self.0[std::mem::size_of::<abi::ForgetOne>()..];
        Some(one)
    }
}

#[derive(Debug)]
pub enum Operation<'a> {
    Init(abi::InitIn),
    Destroy,
    /// The kernel's answer to a retrieve notification; expects no reply.
    NotifyReply,
    Interrupt {
        unique: u64,
    },
    Lookup {
        name: Name<'a>,
    },
    Forget {
        nlookup: u64,
    },
    BatchForget {
        items: ForgetList<'a>,
    },
    Getattr {
        fh: Option<u64>,
    },
    Setattr(abi::SetattrIn),
    Readlink,
    Symlink {
        name: Name<'a>,
        target: &'a [u8],
    },
    Mknod {
        arg: abi::MknodIn,
        name: Name<'a>,
    },
    Mkdir {
        arg: abi::MkdirIn,
        name: Name<'a>,
    },
    Unlink {
        name: Name<'a>,
    },
    Rmdir {
        name: Name<'a>,
    },
    Rename {
        newdir: u64,
        flags: u32,
        name: Name<'a>,
        newname: Name<'a>,
    },
    Link {
        oldnodeid: u64,
        name: Name<'a>,
    },
    Open {
        flags: u32,
        open_flags: u32,
    },
    Create {
        arg: abi::CreateIn,
        name: Name<'a>,
    },
    Read(abi::ReadIn),
    Write {
        arg: abi::WriteIn,
        data: &'a [u8],
    },
    Flush(abi::FlushIn),
    Release(abi::ReleaseIn),
    Fsync {
        fh: u64,
        datasync: bool,
    },
    Statfs,
    Setxattr {
        flags: u32,
        name: &'a [u8],
        value: &'a [u8],
    },
    Getxattr {
        size: u32,
        name: &'a [u8],
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a [u8],
    },
    Opendir {
        flags: u32,
    },
    Readdir(abi::ReadIn),
    Readdirplus(abi::ReadIn),
    Releasedir(abi::ReleaseIn),
    Fsyncdir {
        fh: u64,
        datasync: bool,
    },
    Access {
        mask: u32,
    },
    Fallocate(abi::FallocateIn),
    Lseek(abi::LseekIn),
    CopyFileRange(abi::CopyFileRangeIn),
    /// An opcode we do not implement; answered ENOSYS.
    Unsupported(u32),
}

#[derive(Debug)]
pub struct Request<'a> {
    pub header: abi::InHeader,
    pub op: Operation<'a>,
}

/// A cursor over the payload that refuses to read past its end.
struct Payload<'a> {
    bytes: &'a [u8],
    op: &'static str,
}

impl<'a> Payload<'a> {
    fn pod<T: Pod>(&mut self) -> Result<T, DecodeError> {
        let need = std::mem::size_of::<T>();
        let value = abi::read_pod::<T>(self.bytes).ok_or(DecodeError::ShortPayload {
            op: self.op,
            need,
            have: self.bytes.len(),
        })?;
        self.bytes = &self.bytes[need..];
        Ok(value)
    }

    /// A NUL-terminated string; the NUL is consumed but not returned.
    fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated { op: self.op })?;
        let s = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        Ok(s)
    }

    fn name(&mut self) -> Result<Name<'a>, DecodeError> {
        let op = self.op;
        Name::new(self.cstr()?).ok_or(DecodeError::BadName { op })
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

impl<'a> Request<'a> {
    /// Decodes one request from exactly the bytes one `read()` returned.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header =
            abi::read_pod::<abi::InHeader>(buf).ok_or(DecodeError::ShortHeader(buf.len()))?;
        let declared = header.len as usize;
        if declared != buf.len() {
            return Err(DecodeError::LengthMismatch {
                declared,
                actual: buf.len(),
            });
        }
        let hdr_len = std::mem::size_of::<abi::InHeader>();
        // Extension headers (security context, supplementary groups) sit at the end; we never
        // ask for them, but a kernel that sends them must not shift our parsing.
        let ext = header.total_extlen as usize * 8;
        let body_end = declared.checked_sub(ext).filter(|&e| e >= hdr_len).ok_or(
            DecodeError::ShortPayload {
                op: opcode::name(header.opcode),
                need: hdr_len + ext,
                have: declared,
            },
        )?;
        let mut p = Payload {
            bytes: &buf[hdr_len..body_end],
            op: opcode::name(header.opcode),
        };
        let op = Self::operation(header.opcode, &mut p)?;
        Ok(Request { header, op })
    }

    fn operation(code: u32, p: &mut Payload<'a>) -> Result<Operation<'a>, DecodeError> {
        use Operation as O;
        Ok(match code {
            opcode::INIT => {
                // Kernels before 7.36 send only the first 16 bytes; the rest reads as zero.
                let mut raw = [0u8; std::mem::size_of::<abi::InitIn>()];
                let have = p.rest();
                if have.len() < abi::COMPAT_INIT_IN_SIZE {
                    return Err(DecodeError::ShortPayload {
                        op: "init",
                        need: abi::COMPAT_INIT_IN_SIZE,
                        have: have.len(),
                    });
                }
                let n = have.len().min(raw.len());
                raw[..n].copy_from_slice(&have[..n]);
                O::Init(abi::read_pod(&raw).unwrap_or_default())
            }
            opcode::DESTROY => O::Destroy,
            opcode::NOTIFY_REPLY => O::NotifyReply,
            opcode::INTERRUPT => O::Interrupt {
                unique: p.pod::<abi::InterruptIn>()?.unique,
            },
            opcode::LOOKUP => O::Lookup { name: p.name()? },
            opcode::FORGET => O::Forget {
                nlookup: p.pod::<abi::ForgetIn>()?.nlookup,
            },
            opcode::BATCH_FORGET => {
                let arg = p.pod::<abi::BatchForgetIn>()?;
                let rest = p.rest();
                let need =
                    (arg.count as usize).saturating_mul(std::mem::size_of::<abi::ForgetOne>());
                if rest.len() < need {
                    return Err(DecodeError::ShortPayload {
                        op: "batch_forget",
                        need,
                        have: rest.len(),
                    });
                }
                O::BatchForget {
                    items: ForgetList(&rest[..need]),
                }
            }
            opcode::GETATTR => {
                let arg = p.pod::<abi::GetattrIn>()?;
                O::Getattr {
                    fh: (arg.getattr_flags & abi::GETATTR_FH != 0).then_some(arg.fh),
                }
            }
            opcode::SETATTR => O::Setattr(p.pod()?),
            opcode::READLINK => O::Readlink,
            opcode::SYMLINK => {
                let name = p.name()?;
                let target = p.cstr()?;
                O::Symlink { name, target }
            }
            opcode::MKNOD => {
                let arg = p.pod()?;
                O::Mknod {
                    arg,
                    name: p.name()?,
                }
            }
            opcode::MKDIR => {
                let arg = p.pod()?;
                O::Mkdir {
                    arg,
                    name: p.name()?,
                }
            }
            opcode::UNLINK => O::Unlink { name: p.name()? },
            opcode::RMDIR => O::Rmdir { name: p.name()? },
            opcode::RENAME => {
                let arg = p.pod::<abi::RenameIn>()?;
                let name = p.name()?;
                O::Rename {
                    newdir: arg.newdir,
                    flags: 0,
                    name,
                    newname: p.name()?,
                }
            }
            opcode::RENAME2 => {
                let arg = p.pod::<abi::Rename2In>()?;
                let name = p.name()?;
                O::Rename {
                    newdir: arg.newdir,
                    flags: arg.flags,
                    name,
                    newname: p.name()?,
                }
            }
            opcode::LINK => {
                let arg = p.pod::<abi::LinkIn>()?;
                O::Link {
                    oldnodeid: arg.oldnodeid,
                    name: p.name()?,
                }
            }
            opcode::OPEN => {
                let arg = p.pod::<abi::OpenIn>()?;
                O::Open {
                    flags: arg.flags,
                    open_flags: arg.open_flags,
                }
            }
            opcode::CREATE => {
                let arg = p.pod()?;
                O::Create {
                    arg,
                    name: p.name()?,
                }
            }
            opcode::READ => O::Read(p.pod()?),
            opcode::WRITE => {
                let arg = p.pod::<abi::WriteIn>()?;
                let data = p.rest();
                if data.len() != arg.size as usize {
                    return Err(DecodeError::DataLength {
                        op: "write",
                        declared: arg.size as usize,
                        actual: data.len(),
                    });
                }
                O::Write { arg, data }
            }
            opcode::FLUSH => O::Flush(p.pod()?),
            opcode::RELEASE => O::Release(p.pod()?),
            opcode::FSYNC => {
                let arg = p.pod::<abi::FsyncIn>()?;
                O::Fsync {
                    fh: arg.fh,
                    datasync: arg.fsync_flags & 1 != 0,
                }
            }
            opcode::STATFS => O::Statfs,
            opcode::SETXATTR => {
                let arg = p.pod::<abi::SetxattrIn>()?;
                let name = p.cstr()?;
                let rest = p.rest();
                let size = arg.size as usize;
                if rest.len() < size {
                    return Err(DecodeError::DataLength {
                        op: "setxattr",
                        declared: size,
                        actual: rest.len(),
                    });
                }
                O::Setxattr {
                    flags: arg.flags,
                    name,
                    value: &rest[..size],
                }
            }
            opcode::GETXATTR => {
                let arg = p.pod::<abi::GetxattrIn>()?;
                O::Getxattr {
                    size: arg.size,
                    name: p.cstr()?,
                }
            }
            opcode::LISTXATTR => O::Listxattr {
                size: p.pod::<abi::GetxattrIn>()?.size,
            },
            opcode::REMOVEXATTR => O::Removexattr { name: p.cstr()? },
            opcode::OPENDIR => O::Opendir {
                flags: p.pod::<abi::OpenIn>()?.flags,
            },
            opcode::READDIR => O::Readdir(p.pod()?),
            opcode::READDIRPLUS => O::Readdirplus(p.pod()?),
            opcode::RELEASEDIR => O::Releasedir(p.pod()?),
            opcode::FSYNCDIR => {
                let arg = p.pod::<abi::FsyncIn>()?;
                O::Fsyncdir {
                    fh: arg.fh,
                    datasync: arg.fsync_flags & 1 != 0,
                }
            }
            opcode::ACCESS => O::Access {
                mask: p.pod::<abi::AccessIn>()?.mask,
            },
            opcode::FALLOCATE => O::Fallocate(p.pod()?),
            opcode::LSEEK => O::Lseek(p.pod()?),
            opcode::COPY_FILE_RANGE => O::CopyFileRange(p.pod()?),
            other => O::Unsupported(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::abi::as_bytes;

    fn request(op: u32, payload: &[u8]) -> Vec<u8> {
        let header = abi::InHeader {
            len: (40 + payload.len()) as u32,
            opcode: op,
            unique: 7,
            nodeid: 1,
            uid: 10057,
            gid: 10057,
            pid: 1,
            total_extlen: 0,
            padding: 0,
        };
        let mut v = as_bytes(&header).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// A well-formed payload for every opcode we decode.
    fn valid_payloads() -> Vec<(u32, Vec<u8>)> {
        let z = |n: usize| vec![0u8; n];
        let write = abi::WriteIn {
            size: 3,
            ..Default::default()
        };
        let setx = abi::SetxattrIn { size: 2, flags: 0 };
        let batch = abi::BatchForgetIn { count: 2, dummy: 0 };
        vec![
            (opcode::INIT, z(64)),
            (opcode::DESTROY, vec![]),
            (opcode::INTERRUPT, z(8)),
            (opcode::LOOKUP, b"a\0".to_vec()),
            (opcode::FORGET, z(8)),
            (opcode::BATCH_FORGET, cat(&[as_bytes(&batch), &z(32)])),
            (opcode::GETATTR, z(16)),
            (opcode::SETATTR, z(88)),
            (opcode::READLINK, vec![]),
            (opcode::SYMLINK, b"l\0target\0".to_vec()),
            (opcode::MKNOD, cat(&[&z(16), b"n\0"])),
            (opcode::MKDIR, cat(&[&z(8), b"d\0"])),
            (opcode::UNLINK, b"u\0".to_vec()),
            (opcode::RMDIR, b"r\0".to_vec()),
            (opcode::RENAME, cat(&[&z(8), b"a\0b\0"])),
            (opcode::RENAME2, cat(&[&z(16), b"a\0b\0"])),
            (opcode::LINK, cat(&[&z(8), b"l\0"])),
            (opcode::OPEN, z(8)),
            (opcode::CREATE, cat(&[&z(16), b"c\0"])),
            (opcode::READ, z(40)),
            (opcode::WRITE, cat(&[as_bytes(&write), b"abc"])),
            (opcode::FLUSH, z(24)),
            (opcode::RELEASE, z(24)),
            (opcode::FSYNC, z(16)),
            (opcode::STATFS, vec![]),
            (
                opcode::SETXATTR,
                cat(&[as_bytes(&setx), b"user.x\0", b"vv"]),
            ),
            (opcode::GETXATTR, cat(&[&z(8), b"user.x\0"])),
            (opcode::LISTXATTR, z(8)),
            (opcode::REMOVEXATTR, b"user.x\0".to_vec()),
            (opcode::OPENDIR, z(8)),
            (opcode::READDIR, z(40)),
            (opcode::READDIRPLUS, z(40)),
            (opcode::RELEASEDIR, z(24)),
            (opcode::FSYNCDIR, z(16)),
            (opcode::ACCESS, z(8)),
            (opcode::FALLOCATE, z(32)),
            (opcode::LSEEK, z(24)),
            (opcode::COPY_FILE_RANGE, z(56)),
        ]
    }

    #[test]
    fn every_valid_payload_decodes() {
        for (op, payload) in valid_payloads() {
            let buf = request(op, &payload);
            let req = Request::parse(&buf).unwrap_or_else(|e| panic!("{}: {e}", opcode::name(op)));
            assert!(
                !matches!(req.op, Operation::Unsupported(_)),
                "{}",
                opcode::name(op)
            );
        }
    }

    #[test]
    fn every_truncation_of_every_opcode_is_an_error_or_a_shorter_valid_request() {
        for (op, payload) in valid_payloads() {
            for cut in 0..payload.len() {
                let buf = request(op, &payload[..cut]);
                // Must not panic; the few that stay valid (e.g. a shorter name) are fine.
                let _ = Request::parse(&buf);
            }
            // A header that claims more bytes than were read is always refused.
            let mut buf = request(op, &payload);
            buf.pop();
            if !payload.is_empty() {
                assert!(matches!(
                    Request::parse(&buf),
                    Err(DecodeError::LengthMismatch { .. })
                ));
            }
        }
    }

    #[test]
    fn fixed_size_payloads_refuse_every_short_length() {
        let fixed: &[(u32, usize)] = &[
            (opcode::INTERRUPT, 8),
            (opcode::FORGET, 8),
            (opcode::GETATTR, 16),
            (opcode::SETATTR, 88),
            (opcode::OPEN, 8),
            (opcode::READ, 40),
            (opcode::FLUSH, 24),
            (opcode::RELEASE, 24),
            (opcode::FSYNC, 16),
            (opcode::LISTXATTR, 8),
            (opcode::OPENDIR, 8),
            (opcode::READDIR, 40),
            (opcode::READDIRPLUS, 40),
            (opcode::RELEASEDIR, 24),
            (opcode::ACCESS, 8),
            (opcode::FALLOCATE, 32),
            (opcode::LSEEK, 24),
            (opcode::COPY_FILE_RANGE, 56),
            (opcode::INIT, 16),
        ];
        for &(op, size) in fixed {
            for cut in 0..size {
                let buf = request(op, &vec![0u8; cut]);
                assert!(
                    Request::parse(&buf).is_err(),
                    "{} with {cut} bytes",
                    opcode::name(op)
                );
            }
        }
    }

    #[test]
    fn names_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"a\0", true),
            (b"\0", false),
            (b"a/b\0", false),
            (b"abc", false), // no NUL
            (b"..\0", true), // decodes; the storage view refuses it
        ];
        for &(payload, ok) in cases {
            let buf = request(opcode::LOOKUP, payload);
            assert_eq!(
                Request::parse(&buf).is_ok(),
                ok,
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn write_and_xattr_lengths_are_checked() {
        let write = abi::WriteIn {
            size: 10,
            ..Default::default()
        };
        let buf = request(opcode::WRITE, &cat(&[as_bytes(&write), b"abc"]));
        assert!(matches!(
            Request::parse(&buf),
            Err(DecodeError::DataLength { .. })
        ));
        let setx = abi::SetxattrIn {
            size: 100,
            flags: 0,
        };
        let buf = request(
            opcode::SETXATTR,
            &cat(&[as_bytes(&setx), b"user.x\0", b"vv"]),
        );
        assert!(matches!(
            Request::parse(&buf),
            Err(DecodeError::DataLength { .. })
        ));
        let batch = abi::BatchForgetIn {
            count: u32::MAX,
            dummy: 0,
        };
        let buf = request(opcode::BATCH_FORGET, as_bytes(&batch));
        assert!(Request::parse(&buf).is_err());
    }

    #[test]
    fn extension_headers_longer_than_the_request_are_refused() {
        let mut buf = request(opcode::GETATTR, &[0u8; 16]);
        buf[36..38].copy_from_slice(&100u16.to_ne_bytes());
        assert!(Request::parse(&buf).is_err());
    }

    #[test]
    fn random_garbage_never_panics() {
        // xorshift: deterministic, no dependency.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..200_000 {
            let len = (next() % 200) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if buf.len() >= 40 && next() % 2 == 0 {
                // Make the header plausible so the payload decoders are exercised too.
                let l = buf.len() as u32;
                buf[0..4].copy_from_slice(&l.to_ne_bytes());
                let op = (next() % 60) as u32;
                buf[4..8].copy_from_slice(&op.to_ne_bytes());
                if next() % 2 == 0 {
                    buf[36..38].copy_from_slice(&0u16.to_ne_bytes());
                }
            }
            let _ = Request::parse(&buf);
        }
    }

    #[test]
    fn unknown_opcodes_are_unsupported_not_errors() {
        let buf = request(9999, &[]);
        assert!(matches!(
            Request::parse(&buf).unwrap().op,
            Operation::Unsupported(9999)
        ));
        let buf = request(opcode::GETLK, &[0u8; 48]);
        assert!(matches!(
            Request::parse(&buf).unwrap().op,
            Operation::Unsupported(_)
        ));
    }
}

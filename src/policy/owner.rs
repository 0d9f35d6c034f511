//! The owner tag: what the view records on a file created through the mount (an xattr such as
//! `user.fusegate.owner`) and hands back as `Target::owner`.
//!
//! Format (ASCII decimal uid, then optionally ':' and the creator's first package name):
//!
//! * `"10057:com.example.camera"`: created by an app with packages. Ownership follows the
//!   package, like MediaProvider's `owner_package_name`: it survives the app being reinstalled
//!   under another uid, and any app sharing the uid (and holding the package) owns the file. The
//!   uid is kept for its user id: a package owns only files created in the same Android user.
//! * `"10057"`: created by a uid with no package (no app entry, or a bypass uid). Only that uid
//!   owns the file.
//!
//! Anything else (no tag, a tag without a valid uid) has no owner.

use super::caller::user_id;

/// Builds the tag for a file created by `uid`, whose first package (if any) is `package`.
pub fn encode(uid: u32, package: Option<&str>) -> Vec<u8> {
    match package {
        Some(package) if !package.is_empty() => format!("{uid}:{package}").into_bytes(),
        _ => uid.to_string().into_bytes(),
    }
}

/// A decoded tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    pub uid: u32,
    /// The creator's package; `None` for a uid-only tag.
    pub package: Option<&'a [u8]>,
}

impl<'a> Tag<'a> {
    /// Parses a tag; `None` if it is malformed. Never panics, whatever the bytes.
    pub fn parse(tag: &'a [u8]) -> Option<Tag<'a>> {
        let (uid, package) = match tag.iter().position(|&b| b == b':') {
            Some(colon) => (&tag[..colon], Some(&tag[colon + 1..])),
            None => (tag, None),
        };
        Some(Tag {
            uid: parse_uid(uid)?,
            package: package.filter(|p| !p.is_empty()),
        })
    }

    /// Whether a caller (`uid`, holding `packages`) owns a file carrying this tag.
    pub fn owned_by<'p>(&self, uid: u32, mut packages: impl Iterator<Item = &'p [u8]>) -> bool {
        match self.package {
            Some(package) => {
                user_id(self.uid) == user_id(uid)
                    && packages.any(|p| p.eq_ignore_ascii_case(package))
            }
            None => self.uid == uid,
        }
    }
}

fn parse_uid(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(
            encode(10057, Some("com.example.camera")),
            b"10057:com.example.camera"
        );
        assert_eq!(encode(10057, None), b"10057");
        assert_eq!(encode(10057, Some("")), b"10057");
        assert_eq!(encode(0, None), b"0");
    }

    #[test]
    fn parsing() {
        let tag = |uid, package: Option<&'static [u8]>| Some(Tag { uid, package });
        let cases: &[(&[u8], Option<Tag>)] = &[
            (
                b"10057:com.example.camera",
                tag(10057, Some(b"com.example.camera")),
            ),
            (b"10057", tag(10057, None)),
            (b"10057:", tag(10057, None)),
            (b"0", tag(0, None)),
            (b"4294967295", tag(u32::MAX, None)),
            (b"4294967296", None),
            (b"99999999999", None),
            (b"", None),
            (b":com.a", None),
            (b"-1", None),
            (b"+1", None),
            (b" 10057", None),
            (b"abc", None),
            (b"10057:a:b", tag(10057, Some(b"a:b"))),
            (b"10057:\xff", tag(10057, Some(b"\xff"))),
            (b"\xff:com.a", None),
        ];
        for &(bytes, expected) in cases {
            assert_eq!(
                Tag::parse(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn ownership() {
        let pkgs: &[&[u8]] = &[b"com.a", b"com.shared"];
        let owned = |tag: &[u8], uid| Tag::parse(tag).unwrap().owned_by(uid, pkgs.iter().copied());
        assert!(owned(b"10057:com.a", 10057));
        assert!(owned(b"10057:COM.A", 10057));
        assert!(owned(b"10057:com.shared", 10057));
        // Reinstalled under another uid: the package still owns it.
        assert!(owned(b"10099:com.a", 10057));
        assert!(!owned(b"10057:com.b", 10057));
        // Other Android user.
        assert!(!owned(b"1010057:com.a", 10057));
        assert!(owned(b"1010057:com.a", 1010077));
        // Uid-only tags.
        assert!(owned(b"10057", 10057));
        assert!(!owned(b"10057", 10058));
        assert!(!owned(b"10057", 1010057));
    }
}

//! Caller classes: who is asking, judged from the uid alone.
//!
//! Android uids are `user_id * 100000 + app_id`. The class depends on the `app_id` only, so a
//! system uid of a secondary user is as privileged as in user 0.

/// Uids per Android user.
pub const PER_USER_RANGE: u32 = 100_000;
/// First app id of an installed app.
pub const FIRST_APPLICATION_ID: u32 = 10_000;
/// Isolated processes (`isolatedProcess="true"` services, app zygote children).
pub const FIRST_ISOLATED_ID: u32 = 90_000;
pub const LAST_ISOLATED_ID: u32 = 99_999;

/// How the rules treat a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerClass {
    /// root, shell and system uids: no app rules, everything allowed and visible.
    Bypass,
    /// Isolated processes: nothing at all (EACCES, never listed).
    Isolated,
    /// Everything else: an app, with or without an entry in the table.
    App,
}

pub fn user_id(uid: u32) -> u32 {
    uid / PER_USER_RANGE
}

pub fn app_id(uid: u32) -> u32 {
    uid % PER_USER_RANGE
}

pub fn classify(uid: u32) -> CallerClass {
    let app_id = app_id(uid);
    if app_id < FIRST_APPLICATION_ID {
        // root (0), shell (2000) and every other system uid, in any user.
        CallerClass::Bypass
    } else if (FIRST_ISOLATED_ID..=LAST_ISOLATED_ID).contains(&app_id) {
        CallerClass::Isolated
    } else {
        CallerClass::App
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let cases: &[(u32, CallerClass)] = &[
            (0, CallerClass::Bypass),
            (1000, CallerClass::Bypass),
            (2000, CallerClass::Bypass), // shell
            (9999, CallerClass::Bypass),
            (10_000, CallerClass::App),
            (10_057, CallerClass::App),
            (19_999, CallerClass::App),
            (20_000, CallerClass::App),
            (50_123, CallerClass::App),
            (89_999, CallerClass::App),
            (90_000, CallerClass::Isolated),
            (99_999, CallerClass::Isolated),
            (100_000, CallerClass::Bypass),
            (101_000, CallerClass::Bypass),
            (110_057, CallerClass::App),
            (1_010_057, CallerClass::App),
            (1_090_001, CallerClass::Isolated),
            (u32::MAX, CallerClass::App),
        ];
        for &(uid, class) in cases {
            assert_eq!(classify(uid), class, "uid {uid}");
        }
        assert_eq!(user_id(1_010_057), 10);
        assert_eq!(app_id(1_010_057), 10_057);
    }
}

//! Caller classes: who is asking, judged from the uid (and the table's platform uids).
//!
//! Android uids are `user_id * 100000 + app_id`. The class depends on the `app_id` only, so a
//! system uid of a secondary user is as privileged as in user 0.

/// Uids per Android user.
pub const PER_USER_RANGE: u32 = 100_000;
/// First and last app id of an installed app.
pub const FIRST_APPLICATION_ID: u32 = 10_000;
pub const LAST_APPLICATION_ID: u32 = 19_999;
/// SDK sandbox processes (Android 13+): an app's uid + 10000. They get nothing, as isolated.
pub const FIRST_SDK_SANDBOX_ID: u32 = 20_000;
pub const LAST_SDK_SANDBOX_ID: u32 = 29_999;
/// Isolated processes (`isolatedProcess="true"` services, app zygote children).
pub const FIRST_ISOLATED_ID: u32 = 90_000;
pub const LAST_ISOLATED_ID: u32 = 99_999;

/// Platform app ids that bypass the rules when the table names none: on Android system
/// (1000), media (1013), media_rw (1023) and shell (2000), as MediaProvider lets them; on any
/// other system nobody but root, since uid 1000 there is an ordinary user.
pub const DEFAULT_PLATFORM_APP_IDS: &[u32] = if cfg!(target_os = "android") {
    &[1000, 1013, 1023, 2000]
} else {
    &[]
};

/// How the rules treat a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerClass {
    /// root and the platform uids: no app rules, everything allowed and visible.
    Bypass,
    /// Isolated and SDK sandbox processes: nothing at all (EACCES, never listed).
    Isolated,
    /// An installed app (with or without an entry in the table): the scoped-storage rules.
    App,
    /// Any other uid (an ordinary Linux user, `nobody`): plain POSIX permissions, judged by the
    /// kernel with the caller's own credentials. Never the daemon's power.
    Posix,
}

pub fn user_id(uid: u32) -> u32 {
    uid / PER_USER_RANGE
}

pub fn app_id(uid: u32) -> u32 {
    uid % PER_USER_RANGE
}

/// `platform` lists app ids (matched in every Android user).
pub fn classify(uid: u32, platform: &[u32]) -> CallerClass {
    let app_id = app_id(uid);
    if uid == 0 || platform.contains(&app_id) {
        CallerClass::Bypass
    } else if (FIRST_APPLICATION_ID..=LAST_APPLICATION_ID).contains(&app_id) {
        CallerClass::App
    } else if (FIRST_ISOLATED_ID..=LAST_ISOLATED_ID).contains(&app_id)
        || (FIRST_SDK_SANDBOX_ID..=LAST_SDK_SANDBOX_ID).contains(&app_id)
    {
        CallerClass::Isolated
    } else {
        CallerClass::Posix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let platform = &[1000, 2000];
        let cases: &[(u32, CallerClass)] = &[
            (0, CallerClass::Bypass),
            (1000, CallerClass::Bypass),
            (2000, CallerClass::Bypass), // shell
            (1013, CallerClass::Posix),  // not in this list
            (9999, CallerClass::Posix),
            (65534, CallerClass::Posix), // nobody
            (10_000, CallerClass::App),
            (10_057, CallerClass::App),
            (19_999, CallerClass::App),
            (20_000, CallerClass::Isolated), // SDK sandbox
            (29_999, CallerClass::Isolated),
            (50_123, CallerClass::Posix),
            (89_999, CallerClass::Posix),
            (90_000, CallerClass::Isolated),
            (99_999, CallerClass::Isolated),
            (100_000, CallerClass::Posix), // root of user 1 is not root
            (101_000, CallerClass::Bypass),
            (110_057, CallerClass::App),
            (1_010_057, CallerClass::App),
            (1_090_001, CallerClass::Isolated),
            (u32::MAX, CallerClass::Posix),
        ];
        for &(uid, class) in cases {
            assert_eq!(classify(uid, platform), class, "uid {uid}");
        }
        assert_eq!(classify(1000, &[]), CallerClass::Posix);
        assert_eq!(user_id(1_010_057), 10);
        assert_eq!(app_id(1_010_057), 10_057);
    }
}

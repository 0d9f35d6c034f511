//! Logging setup for the faces: logcat (tag "fusegate") on Android, stderr elsewhere.

/// Installs the logger once; later calls are no-ops. `RUST_LOG` overrides the level off Android.
pub fn init() {
    #[cfg(target_os = "android")]
    android_logger::init_once(
        android_logger::Config::default()
            .with_tag("fusegate")
            .with_max_level(log::LevelFilter::Info),
    );
    #[cfg(not(target_os = "android"))]
    {
        let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .format_target(false)
            .try_init();
    }
}

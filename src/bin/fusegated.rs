//! fusegated: the command-line face. Parses flags, starts a `Daemon`, and turns signals into
//! actions (TERM/INT: stop; HUP: reload the policy file; USR1: log statistics).

use fusegate::daemon::{Daemon, Options};
use fusegate::policy::{self, Table};
use fusegate::supervisor::{self, Event, Supervisor};
use nix::sys::signal::{SigSet, Signal};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
fusegated: Android-style scoped storage over a plain directory, served through FUSE.

USAGE:
    fusegated --lower DIR --mount DIR [OPTIONS]
    fusegated --lower DIR --fd N [OPTIONS]

REQUIRED:
    --lower DIR          The real directory to show (e.g. /data/media/0). Must exist.
    --mount DIR          Mount the view here (an existing, empty, unmounted directory).
    --fd N               Instead of mounting: serve the already-mounted /dev/fuse session on
                         file descriptor N (as handed over by the platform, e.g. vold).

OPTIONS:
    --policy FILE        Apps, permissions and grants (TOML). Reloaded atomically on SIGHUP; a
                         bad file is refused with its line number and the old policy stays.
                         Without it the app table is empty: apps see only their own files.
    --threads N          Worker threads, each on its own cloned /dev/fuse fd
                         [default: half the CPUs, 1 to 4].
    --no-passthrough     Serve file data in userspace even if the kernel supports FUSE
                         passthrough (Linux 6.9+). By default passthrough is used when offered.
    --io-uring MODE      auto, on or off [default: auto]: serve requests over FUSE io_uring
                         queues (Linux 6.14+, fuse.enable_uring=Y) when the kernel offers them;
                         `on` fails if it does not. The log says which transport serves.
    --cache-timeout SECS How long the kernel may cache names and attributes that look the same
                         to every app [default: 5]. Per-app private paths are never cached.
    --xattrs MODE        none or user [default: none]: none answers the first xattr request
                         with ENOSYS, so the kernel stops asking (as Android's emulated
                         storage; `ls -l` makes no xattr round trips); user offers the lower
                         files' user.* attributes.
    --events FILE        Append file events (created, closed_after_write, renamed, deleted) as
                         JSON lines to FILE, or to stdout with '-'. A 'dropped' event line
                         says how many a slow reader missed (then rescan) [default: off].
    --no-supervise       Serve in this one process. By default a small supervisor holds the
                         session and runs the server as a child process, starting a new one
                         on the same session when it dies (apps see a short stall, not an
                         error); io_uring is then off (--io-uring on implies --no-supervise).
    -h, --help           Show this help.
    --version            Show the version and the git revision it was built from.

SIGNALS:
    SIGTERM, SIGINT      Unmount (lazily if files are open), release passthrough files, exit 0.
    SIGHUP               Reload --policy FILE.
    SIGUSR1              Log the statistics.
    SIGUSR2              (supervised) Replace the server with the binary now on disk.

Logs go to stderr; RUST_LOG=debug for more. Must run as root.";

struct Args {
    lower: PathBuf,
    mount: Option<PathBuf>,
    fd: Option<i32>,
    policy: Option<PathBuf>,
    events: Option<PathBuf>,
    options: Options,
    supervise: bool,
    /// Set in a server started by the supervisor (hidden flags).
    serve: Option<ServeFds>,
    /// The flags a supervised server is started with (what configures the view).
    server_args: Vec<std::ffi::OsString>,
}

/// The fds a supervisor hands its server.
struct ServeFds {
    session: i32,
    workers: Vec<i32>,
    state: i32,
    epoch: u16,
}

/// What the command line asks for.
enum Command {
    Run(Box<Args>),
    Help,
    Version,
}

fn parse_args() -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let (mut lower, mut mount, mut fd, mut policy) = (None, None, None, None);
    let mut events = None;
    let mut options = Options::default();
    let mut supervise = true;
    let (mut serve_fd, mut worker_fds, mut state_fd, mut epoch) = (None, None, None, 1u16);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("lower") => {
                lower = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("no-supervise") => supervise = false,
            Long("serve-fd") => serve_fd = Some(number(&mut parser, "--serve-fd")?),
            Long("state-fd") => state_fd = Some(number(&mut parser, "--state-fd")?),
            Long("epoch") => epoch = number(&mut parser, "--epoch")?,
            Long("worker-fds") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                let list: Option<Vec<i32>> = v
                    .to_str()
                    .map(|s| s.split(',').map(|n| n.parse().ok()).collect())
                    .unwrap_or(None);
                worker_fds = Some(list.ok_or("--worker-fds needs numbers")?);
            }
            Long("mount") => {
                mount = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("fd") => fd = Some(number(&mut parser, "--fd")?),
            Long("policy") => {
                policy = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("threads") => {
                let n: usize = number(&mut parser, "--threads")?;
                if n == 0 || n > 64 {
                    return Err("--threads must be between 1 and 64".into());
                }
                options.threads = n;
            }
            Long("no-passthrough") => options.passthrough = false,
            Long("events") => {
                events = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("io-uring") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                options.io_uring = v
                    .to_str()
                    .unwrap_or("")
                    .parse()
                    .map_err(|e| format!("--io-uring: {e}"))?;
            }
            Long("xattrs") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                options.xattrs = v
                    .to_str()
                    .unwrap_or("")
                    .parse()
                    .map_err(|e| format!("--xattrs: {e}"))?;
            }
            Long("cache-timeout") => {
                options.cache_ttl = Duration::from_secs(number(&mut parser, "--cache-timeout")?)
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("version") => return Ok(Command::Version),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let lower = lower.ok_or("--lower DIR is required")?;
    let serve = match (serve_fd, worker_fds, state_fd) {
        (Some(session), Some(workers), Some(state)) => Some(ServeFds {
            session,
            workers,
            state,
            epoch,
        }),
        (None, None, None) => None,
        _ => return Err("--serve-fd, --worker-fds and --state-fd go together".into()),
    };
    if serve.is_none() && mount.is_some() == fd.is_some() {
        return Err("give exactly one of --mount DIR or --fd N".into());
    }
    // io_uring queues die with the process that registered them, so a server that must be
    // replaceable reads /dev/fuse; asking for io_uring outright means one process.
    let supervise = supervise && options.io_uring != fusegate::fuse::IoUringMode::On;
    Ok(Command::Run(Box::new(Args {
        lower,
        mount,
        fd,
        policy,
        events,
        options,
        supervise,
        serve,
        server_args: server_args(std::env::args_os().skip(1)),
    })))
}

/// The flags a supervised server gets: all given, but those only the supervisor acts on.
fn server_args(given: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const SUPERVISOR_ONLY: [&str; 4] = ["--mount", "--fd", "--threads", "--io-uring"];
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in given {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let text = arg.to_string_lossy();
        let name = text.split('=').next().unwrap_or("");
        if SUPERVISOR_ONLY.contains(&name) {
            skip_value = !text.contains('=');
        } else if text != "--no-supervise" {
            out.push(arg);
        }
    }
    out
}

/// Writes the daemon's file events as JSON lines from a thread of its own, so that a slow
/// reader never holds up a FUSE request (the daemon drops and counts what does not fit).
struct EventWriter {
    feed: fusegate::EventFeed,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EventWriter {
    fn start(daemon: &Daemon, path: &std::path::Path) -> std::io::Result<EventWriter> {
        use std::io::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let feed = daemon.events();
        feed.set_listening(true);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, s) = (feed.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let mut reported = 0;
                loop {
                    let done = s.load(Relaxed);
                    let batch = f.next_batch(Duration::from_millis(200));
                    let mut text = String::new();
                    for event in &batch {
                        text.push_str(&event.to_json());
                        text.push('\n');
                    }
                    let dropped = f.dropped();
                    if dropped != reported {
                        text.push_str(&format!(
                            "{{\"event\":\"dropped\",\"count\":{}}}\n",
                            dropped - reported
                        ));
                        reported = dropped;
                    }
                    if !text.is_empty() {
                        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                            log::error!("writing file events: {e}; no more events");
                            f.set_listening(false);
                            return;
                        }
                    }
                    if done {
                        return;
                    }
                }
            })?;
        Ok(EventWriter {
            feed,
            thread: Some(thread),
            stop,
        })
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.feed.set_listening(false);
    }
}

fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    v.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number, got {v:?}"))
}

fn load_policy(path: &PathBuf) -> Result<Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading policy {}: {e}", path.display()))?;
    policy::parse_config(&text).map_err(|e| format!("policy {}: {e}", path.display()))
}

fn main() -> ExitCode {
    fusegate::logging::init();
    let mut args = match parse_args() {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!(
                "fusegated {} (git {})",
                fusegate::VERSION,
                fusegate::GIT_REVISION
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fusegated: {e}\nTry 'fusegated --help'.");
            return ExitCode::from(2);
        }
    };
    log::info!(
        "fusegated {} (git {})",
        fusegate::VERSION,
        fusegate::GIT_REVISION
    );
    if !args.lower.is_dir() {
        eprintln!(
            "fusegated: lower directory {} does not exist or is not a directory",
            args.lower.display()
        );
        return ExitCode::FAILURE;
    }
    if let Some(p) = &args.policy {
        match load_policy(p) {
            Ok(t) => {
                log::info!(
                    "policy {}: {} apps, {} grants",
                    p.display(),
                    t.apps.len(),
                    t.grants.len()
                );
                args.options.policy = t;
            }
            Err(e) => {
                eprintln!("fusegated: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        log::info!("no --policy: the app table is empty, apps see only their own files");
    }

    // Block the signals we handle before any thread starts, so they all inherit the mask and
    // the signals are taken only by the wait below.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
    ] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("fusegated: blocking signals: {e}");
        return ExitCode::FAILURE;
    }

    if let Some(fds) = args.serve.take() {
        return serve(&args, fds, &signals);
    }
    if args.supervise {
        return supervise(&args, &signals);
    }

    let started = match (&args.mount, args.fd) {
        (Some(mp), _) => Daemon::mount(mp, &args.lower, args.options.clone()),
        (None, Some(fd)) => {
            // SAFETY: the caller handed this fd to us to own; nothing else in this process
            // uses it. A wrong fd is refused by the /dev/fuse check inside attach.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Daemon::attach(owned, &args.lower, args.options.clone())
        }
        (None, None) => unreachable!("checked by parse_args"),
    };
    let daemon = match started {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fusegated: {e}");
            return ExitCode::FAILURE;
        }
    };
    run(daemon, &args, &signals, false)
}

/// Serves until a signal or the end of the session. `handoff`: SIGUSR2 ends serving for a
/// successor (a supervised server).
fn run(mut daemon: Daemon, args: &Args, signals: &SigSet, handoff: bool) -> ExitCode {
    let events = match &args.events {
        Some(path) => match EventWriter::start(&daemon, path) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("fusegated: --events {}: {e}", path.display());
                daemon.stop();
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };

    let mut handed_over = false;
    loop {
        match wait_signal(signals, Duration::from_millis(250)) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                log::info!("stopping");
                break;
            }
            Some(Signal::SIGUSR2) if handoff => {
                log::info!("handing the session over to a new server");
                handed_over = true;
                break;
            }
            Some(Signal::SIGHUP) => match &args.policy {
                Some(p) => match load_policy(p) {
                    Ok(t) => {
                        log::info!(
                            "policy reloaded: {} apps, {} grants",
                            t.apps.len(),
                            t.grants.len()
                        );
                        daemon.replace_policy(t);
                    }
                    Err(e) => log::error!("{e}; keeping the current policy"),
                },
                None => log::info!("SIGHUP without --policy: nothing to reload"),
            },
            Some(Signal::SIGUSR1) => log::info!("stats: {}", daemon.stats()),
            _ => {
                if !daemon.is_running() {
                    log::info!("the mount went away; exiting");
                    break;
                }
            }
        }
    }
    if handed_over {
        daemon.stop_for_handoff();
    } else {
        daemon.stop();
    }
    drop(events);
    log::info!("final stats: {}", daemon.stats());
    ExitCode::SUCCESS
}

/// A server started by the supervisor on the session it holds.
fn serve(args: &Args, fds: ServeFds, signals: &SigSet) -> ExitCode {
    // SAFETY: the supervisor handed these fds to this process (they are not close-on-exec
    // there for this reason); nothing else here uses them. Wrong ones are refused by the
    // /dev/fuse and state-file checks.
    let (session, workers, state) = unsafe {
        (
            OwnedFd::from_raw_fd(fds.session),
            fds.workers
                .iter()
                .map(|&fd| OwnedFd::from_raw_fd(fd))
                .collect::<Vec<_>>(),
            OwnedFd::from_raw_fd(fds.state),
        )
    };
    match Daemon::resume(
        session,
        workers,
        state,
        fds.epoch,
        &args.lower,
        args.options.clone(),
    ) {
        Ok(daemon) => run(daemon, args, signals, true),
        Err(e) => {
            eprintln!("fusegated: {e}");
            ExitCode::from(supervisor::exit::CANNOT_START as u8)
        }
    }
}

/// The default: hold the session, run servers on it one after another.
fn supervise(args: &Args, signals: &SigSet) -> ExitCode {
    let session = match (&args.mount, args.fd) {
        (Some(mp), _) => Daemon::mount_session(mp).map_err(|e| e.to_string()),
        (None, Some(fd)) => {
            // SAFETY: the caller handed this fd to us to own; nothing else here uses it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            fusegate::fuse::Channel::from_fd(owned)
                .map_err(|e| format!("the fd handed over is not a /dev/fuse session: {e}"))
        }
        (None, None) => unreachable!("checked by parse_args"),
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fusegated: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sup = Supervisor::new(
        session,
        args.options.threads,
        args.mount.clone(),
        args.server_args.clone(),
    );
    let mut sup = match sup.and_then(|mut s| s.start().map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fusegated: starting the server: {e}");
            if let Some(mp) = &args.mount {
                let _ = fusegate::fuse::mount::unmount(mp);
            }
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "supervising: SIGUSR2 replaces the server with {}",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    let mut code = ExitCode::SUCCESS;
    loop {
        match wait_signal(signals, Duration::from_millis(100)) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                log::info!("stopping");
                break;
            }
            Some(Signal::SIGUSR2) => {
                if let Err(e) = sup.upgrade() {
                    log::error!("upgrade: cannot start the new server: {e}");
                }
            }
            Some(sig @ (Signal::SIGHUP | Signal::SIGUSR1)) => sup.forward(sig as libc::c_int),
            _ => {}
        }
        match sup.check() {
            Ok(Event::Idle) => {}
            Ok(Event::SessionEnded) => {
                log::info!("the mount went away; exiting");
                break;
            }
            Ok(Event::CannotStart) => {
                code = ExitCode::FAILURE;
                break;
            }
            Err(e) => log::error!("starting a new server: {e}; trying again"),
        }
    }
    sup.shutdown();
    code
}

fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: sigtimedwait reads the set and timeout we pass and writes no siginfo (null).
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if sig <= 0 {
        return None;
    }
    Signal::try_from(sig).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_gets_every_flag_but_the_supervisors() {
        let given = [
            "--lower",
            "L",
            "--mount",
            "M",
            "--threads=2",
            "--io-uring",
            "off",
            "--no-supervise",
            "--policy",
            "P",
            "--no-passthrough",
            "--fd=7",
            "--cache-timeout",
            "3",
        ];
        let got = server_args(given.iter().map(std::ffi::OsString::from));
        let want = [
            "--lower",
            "L",
            "--policy",
            "P",
            "--no-passthrough",
            "--cache-timeout",
            "3",
        ];
        assert_eq!(got, want.map(std::ffi::OsString::from));
    }
}

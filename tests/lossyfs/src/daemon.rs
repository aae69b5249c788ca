//! The `lossyfs` process: mounts, says `mounted`, serves until told to stop, and unmounts.
//!
//! Signals are taken synchronously by the main thread (blocked everywhere, then waited for):
//! SIGUSR1 loses power; SIGTERM, SIGINT and SIGHUP stop. With `exit_on_stdin_eof` the end of
//! standard input stops it too, so a harness that dies (and closes the pipe) takes its mount
//! with it. Stopping keeps everything unless `lose_on_exit` is set.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};

use crate::fuse::LossyFilesystem;
use crate::mounts;
use crate::state::State;

/// What the daemon is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory whose contents the mount shows.
    pub backing: PathBuf,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Lose power when stopping (by signal, stdin EOF or an unmount from outside).
    pub lose_on_exit: bool,
    /// Stop when standard input reaches its end.
    pub exit_on_stdin_eof: bool,
    /// Mount with auto_unmount when fusermount3 is there to do it.
    pub auto_unmount: bool,
}

/// The signals the main thread waits for.
struct Signals(libc::sigset_t);

impl Signals {
    /// Blocks the stop and lose-power signals in this thread and every thread it starts
    /// later, so only `wait` sees them.
    fn block() -> io::Result<Signals> {
        // SAFETY: sigemptyset fills the zeroed set it is given; sigaddset and pthread_sigmask
        // read a valid set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
                libc::sigaddset(&mut set, signal);
            }
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
                0 => Ok(Signals(set)),
                errno => Err(io::Error::from_raw_os_error(errno)),
            }
        }
    }

    /// The next signal, or None after `timeout`.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
        // SAFETY: a valid set and timespec; the siginfo out-pointer may be null.
        let signal = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        (signal > 0).then_some(signal)
    }
}

/// Whether fuser can find the helper auto_unmount needs.
fn fusermount_available() -> bool {
    if std::env::var_os("FUSERMOUNT_PATH").is_some() {
        return true;
    }
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| dir.join("fusermount3").is_file() || dir.join("fusermount").is_file())
}

fn mount_config(opts: &Options) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName("lossyfs".into()), MountOption::Subtype("lossyfs".into())];
    if opts.auto_unmount && fusermount_available() {
        // fusermount3 unmounts when we die, however we die; it wants allow_root or allow_other.
        config.mount_options.push(MountOption::AutoUnmount);
        config.acl = SessionACL::RootAndOwner;
    }
    config
}

/// Mounts, serves until stopped, unmounts.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let signals = Signals::block().context("blocking signals")?;
    check_dirs(opts)?;
    let state = State::new(&opts.backing).with_context(|| format!("backing dir {}", opts.backing.display()))?;
    let state = Arc::new(Mutex::new(state));
    let fs = LossyFilesystem::new(state.clone());
    let session = Session::new(fs, &opts.mountpoint, &mount_config(opts))
        .with_context(|| format!("mounting at {}", opts.mountpoint.display()))?;
    let session = session.spawn().context("starting the session thread")?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "mounted").and_then(|()| stdout.flush()).context("announcing the mount")?;
    if opts.exit_on_stdin_eof {
        watch_stdin().context("watching stdin")?;
    }
    serve(&signals, &session, &state);
    if opts.lose_on_exit {
        lose_power(&state, "exit");
    }
    unmount(session, &opts.mountpoint);
    Ok(())
}

/// A mount point inside the backing directory would make the filesystem list (and stat)
/// itself while serving, and hang.
fn check_dirs(opts: &Options) -> anyhow::Result<()> {
    let backing = opts.backing.canonicalize().with_context(|| format!("backing dir {}", opts.backing.display()))?;
    let mountpoint =
        opts.mountpoint.canonicalize().with_context(|| format!("mount point {}", opts.mountpoint.display()))?;
    if mountpoint.starts_with(&backing) {
        anyhow::bail!("mount point {} is inside the backing dir {}", mountpoint.display(), backing.display());
    }
    Ok(())
}

/// Waits for a stop: a stop signal, or the session ending (unmounted from outside).
fn serve(signals: &Signals, session: &BackgroundSession, state: &Mutex<State>) {
    loop {
        match signals.wait(Duration::from_millis(200)) {
            Some(libc::SIGUSR1) => lose_power(state, "SIGUSR1"),
            Some(_) => return,
            None if session.guard.is_finished() => return,
            None => {}
        }
    }
}

fn lose_power(state: &Mutex<State>, why: &str) {
    let report = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).lose_power(None);
    eprintln!("lossyfs: lost power ({why}): {report}");
}

/// A thread that turns the end of stdin into SIGTERM (which the main thread waits for).
fn watch_stdin() -> io::Result<()> {
    std::thread::Builder::new().name("lossyfs-stdin".into()).spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        // SAFETY: sending a signal to our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    })?;
    Ok(())
}

/// The session thread, with the rest of the session dropped: that unmounts.
fn session_thread(session: BackgroundSession) -> JoinHandle<io::Result<()>> {
    session.guard
}

/// Unmounts; a busy mount is detached. Waits a little for the session thread, not forever: a
/// detached mount still in use keeps it alive, and our exit closes the connection anyway.
fn unmount(session: BackgroundSession, mountpoint: &Path) {
    let thread = session_thread(session);
    if mounts::is_mounted(mountpoint)
        && let Err(e) = mounts::detach(mountpoint)
    {
        eprintln!("lossyfs: unmounting {}: {e}", mountpoint.display());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if thread.is_finished() {
        match thread.join() {
            Ok(Err(e)) => eprintln!("lossyfs: session ended with {e}"),
            Err(_) => eprintln!("lossyfs: session thread panicked"),
            Ok(Ok(())) => {}
        }
    }
}

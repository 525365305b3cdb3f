//! Ctrl-C and SIGTERM during a run: the first one only sets a flag that the executor
//! polls (it then kills every running stage's process group or cancels its Slurm jobs,
//! and returns with the store consistent); a second one ends `slayer` at once.
//! Also the other side: [`die_with_group_on_term`], installed by a stage's child process
//! so that its death signal takes every process it started with it.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(signal: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // Second signal: the default action (async-signal-safe calls only).
        // SAFETY: signal and raise are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

extern "C" fn kill_own_group(_: libc::c_int) {
    // SAFETY: kill is async-signal-safe; 0 = this process's group, this process included.
    unsafe {
        libc::kill(0, libc::SIGKILL);
    }
}

fn set_handler(signals: &[libc::c_int], handler: extern "C" fn(libc::c_int)) {
    for &signal in signals {
        // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP request an orderly stop (see the module docs).
pub fn install() {
    set_handler(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], on_interrupt);
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// For a stage's child process (the leader of its own process group): SIGTERM — its
/// parent's death signal, `scancel`, or the engine stopping — kills the whole group.
pub fn die_with_group_on_term() {
    set_handler(&[libc::SIGTERM, libc::SIGHUP], kill_own_group);
}

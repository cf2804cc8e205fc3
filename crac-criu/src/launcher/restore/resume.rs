//! CRIU running: wait for the restored process to resume, then hand it over (the
//! phases reported, the listeners' turn passed on), or abandon the restore.

use std::time::{Duration, Instant};

use crate::launcher::restore::admit::ListenersTurn;
use crate::launcher::restore::launch::Started;
use crate::launcher::restore::options::Job;
use crate::launcher::{phases, supervise, temp_files};
use crate::sys::process;

/// Waits until the process resumed or CRIU ended; an error says why the restore must be
/// abandoned instead: the deadline passed, or a stop signal (Ctrl-C, `docker stop`)
/// came first. Before the process is woken, a signal cannot reach it (CRIU holds it), so
/// a stop means "do not restore". Once it was woken it runs, perhaps before CRIU's
/// `post-resume`: the signal, passed on to CRIU and held pending there, reaches it
/// through the `__wait` CRIU becomes, and the restore ends as the process does.
pub(super) fn await_resume(job: &Job<'_>, started: &mut Started) -> Result<(), String> {
    const STOPS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT];
    let deadline = job.bounds.deadline;
    loop {
        // first: CRIU may have ended because of the signal it was passed
        let stopped = STOPS.into_iter().find(|&s| supervise::was_received(s));
        // read after the signal was seen: a `woken` stamp missing now was missing when
        // it came, and the process had not run
        let stamps = phases::Stamps::read(&job.stamps);
        if let Some(signal) = stopped.filter(|_| !stamps.woken()) {
            return Err(format!(
                "interrupted by signal {signal} before the process resumed"
            ));
        }
        if stamps.resumed().is_some() || started.criu.try_wait().is_ok_and(|ended| ended.is_some())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                "the process had not resumed when the restore timed out (crac \
                        restore --timeout)"
                    .into(),
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Once the copy runs (or CRIU ended): the phases reported, the temp directory tidied
/// (with many files this takes a while, so only now), the listeners' turn passed on
/// once the copy listens.
pub(super) fn hand_over(job: &Job<'_>, started: &mut Started, listeners: Option<ListenersTurn>) {
    phases::report(&job.stamps, job.options.verbose);
    temp_files::remove_leftovers(&std::env::temp_dir());
    if let Some(turn) = listeners {
        turn.pass_once_listening(&mut started.criu);
    }
}

/// Stops CRIU and whatever it restored so far: nothing of it may run on.
pub(super) fn abandon(started: &Started) {
    started.copy.stop();
    let group = started.criu.id();
    if let Err(e) = process::kill_group(group) {
        eprintln!("crac: could not kill the abandoned restore's processes (group {group}): {e}");
    }
}

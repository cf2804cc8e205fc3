//! Secret environment variables, named by `CRAC_SECRET_ENV` or [`secret_env`]: wiped from
//! the process's memory before the dump and given again at restore.
//!
//! Once the dump helper has started (it inherited the environment, so it holds the
//! values), each one that is set is removed from the environment and its value zeroed
//! where libc kept it and in the initial block on the stack that `/proc/PID/environ`
//! shows; the manifest lists the names. A restore must give each one again (`crac
//! restore --env NAME` passes the restorer's own value), or it is refused before CRIU
//! runs. They are set again before any `after_restore` hook runs and left out of
//! `Restore::env`, so that a `Restore` the application keeps holds no secret. A process
//! that goes on without a restore (left running, failed dump) takes the values back from
//! the helper's environment.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, NotCheckpointable};
use crate::sys::{environ, stack};

/// Names declared in code, beside `CRAC_SECRET_ENV`'s.
static DECLARED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Names the environment variable `name` a secret: before a checkpoint it is removed from
/// the process's environment and its value overwritten wherever the process holds it, and
/// a restore must give it again (`crac restore --env NAME`, or `--env NAME=VALUE`).
/// `CRAC_SECRET_ENV=NAME,...` names more without changing the program.
///
/// The program's global allocator must be a [`ScrubbingAlloc`](crac_core::ScrubbingAlloc)
/// (values read with `std::env::var` are copies, freed into the heap), or the checkpoint
/// is refused. Copies the program keeps are its own to wipe (`#[crac(secret)]`).
///
/// ```
/// crac::secret_env("DB_PASSWORD")?;
/// # Ok::<(), crac::criu::Error>(())
/// ```
pub fn secret_env(name: &str) -> Result<(), Error> {
    environ::c_name(name).map_err(|problem| Error::Setting {
        setting: "crac::secret_env",
        problem,
    })?;
    let mut declared = DECLARED.lock().unwrap_or_else(PoisonError::into_inner);
    if !declared.iter().any(|known| known == name) {
        declared.push(name.to_string());
    }
    Ok(())
}

/// `CRAC_SECRET_ENV`'s names: comma-separated.
pub(crate) fn parse(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            environ::c_name(name)?;
            Ok(name.to_string())
        })
        .collect()
}

/// The secret variables: declared, then those in `configured` (`CRAC_SECRET_ENV`).
pub(crate) fn names(configured: &[String]) -> Vec<String> {
    let declared = DECLARED.lock().unwrap_or_else(PoisonError::into_inner);
    let mut names: Vec<String> = Vec::new();
    for name in declared.iter().chain(configured) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The secret variables that are set now.
pub(crate) fn set_now(configured: &[String]) -> Vec<String> {
    let mut names = names(configured);
    names.retain(|name| environ::c_name(name).is_ok_and(|c| environ::is_set(&c)));
    names
}

/// Refuses a checkpoint that would wipe `names` while freed memory keeps copies.
pub(crate) fn check_scrubbing(names: &[String]) -> Result<(), NotCheckpointable> {
    if names.is_empty() {
        return Ok(());
    }
    let what = format!("the secret environment variables {}", names.join(", "));
    crac_core::require_scrubbing(&what).map_err(NotCheckpointable::FreedMemoryNotScrubbed)
}

/// Wipes every one of `names` (checked by [`parse`] or [`secret_env`]) from this process.
pub(crate) fn wipe(names: &[String]) {
    for name in names {
        if let Ok(c) = environ::c_name(name) {
            environ::wipe(&c);
        }
    }
}

/// In a restored copy: sets the secret variables (`names`) among the restore-time `env`,
/// taking them out of it.
pub(crate) fn install(names: &[String], env: &mut Vec<(String, String)>) {
    env.retain(|(key, value)| {
        let secret = names.contains(key);
        if secret {
            // in order: a variable given twice ends with its last value
            environ::set(key, OsStr::new(value));
        }
        !secret
    });
    // setenv copied each value onto this thread's stack
    stack::scrub_dead_frames();
}

/// In a process that goes on without a restore: sets the `wiped` variables again from
/// the environment of the dump helper `helper`, which inherited them.
pub(crate) fn take_back(helper: libc::pid_t, wiped: &[String]) -> std::io::Result<()> {
    if wiped.is_empty() {
        return Ok(());
    }
    let path = format!("/proc/{helper}/environ");
    let block = std::fs::read(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("reading the secret environment variables back from {path}: {e}"),
        )
    })?;
    for name in wiped {
        if let Some(value) = environ::value_in_block(&block, name) {
            environ::set(name, OsStr::from_bytes(value));
        }
    }
    // setenv copied each value onto this thread's stack
    stack::scrub_dead_frames();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crac_secret_env_lists_names_separated_by_commas() {
        assert_eq!(
            parse(" DB_PASSWORD, API_TOKEN ,,").unwrap(),
            ["DB_PASSWORD", "API_TOKEN"]
        );
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert!(parse("A,B=C").unwrap_err().contains("\"B=C\""));
    }

    #[test]
    fn declared_names_must_be_variable_names() {
        assert!(secret_env("CRAC_TEST_DECLARED").is_ok());
        assert!(
            secret_env("A=B")
                .unwrap_err()
                .to_string()
                .starts_with("crac::secret_env: ")
        );
    }

    #[test]
    fn secrets_are_not_wiped_while_freed_memory_keeps_copies() {
        // this test binary's global allocator is the system's
        assert!(check_scrubbing(&[]).is_ok());
        let refused = check_scrubbing(&["DB_PASSWORD".into(), "API_TOKEN".into()]);
        assert!(refused.unwrap_err().to_string().starts_with(
            "freed copies of the secret environment variables DB_PASSWORD, API_TOKEN may \
                 remain in memory and reach the image: the program's global allocator does \
                 not scrub freed memory; add `#[global_allocator]"
        ));
    }

    #[test]
    fn restore_time_secrets_are_set_and_left_out_of_the_listed_environment() {
        let mut env = vec![
            ("CRAC_TEST_SECRET".to_string(), "first".to_string()),
            ("PORT".to_string(), "80".to_string()),
            ("CRAC_TEST_SECRET".to_string(), "last".to_string()),
        ];
        install(&["CRAC_TEST_SECRET".to_string()], &mut env);
        assert_eq!(env, [("PORT".to_string(), "80".to_string())]);
        assert_eq!(std::env::var("CRAC_TEST_SECRET").unwrap(), "last");
    }
}

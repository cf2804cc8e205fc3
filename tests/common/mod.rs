//! A resource that records every call, for tests that assert on the order of hooks.
#![allow(dead_code)] // each test binary uses a different part of it

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crac::{BoxError, Checkpoint, Outcome, Resource, Restore};

pub(crate) mod postgres_server;
pub(crate) mod redis_server;

/// Runs `test` on a multi-thread tokio runtime, serialized with the other tests of the
/// binary, with `engine` selected.
pub(crate) fn on_runtime(engine: &str, test: impl std::future::Future<Output = ()>) {
    let _serial = serial();
    crac::use_engine(engine).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// Test binaries share one global registry across their test threads: tests that use it
/// take this lock first.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub(crate) fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Behaviour {
    Ok,
    FailCheckpoint,
    PanicCheckpoint,
    FailRestore,
}

pub(crate) struct Recorder {
    pub(crate) name: String,
    pub(crate) rank: u32,
    pub(crate) behaviour: Behaviour,
    pub(crate) log: Log,
}

impl Recorder {
    pub(crate) fn new(name: &str, log: &Log) -> Arc<Self> {
        Self::with(name, 0, Behaviour::Ok, log)
    }

    pub(crate) fn with(name: &str, rank: u32, behaviour: Behaviour, log: &Log) -> Arc<Self> {
        Arc::new(Recorder {
            name: name.to_string(),
            rank,
            behaviour,
            log: log.clone(),
        })
    }
}

fn outcome(event: &Restore) -> &'static str {
    match event.outcome() {
        Outcome::Restored => "restored",
        Outcome::LeftRunning => "left-running",
        Outcome::RolledBack => "rolled-back",
        _ => "other",
    }
}

#[derive(Debug)]
pub(crate) struct Cause;

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("socket still busy")
    }
}
impl std::error::Error for Cause {}

#[derive(Debug)]
pub(crate) struct WithCause;

impl std::fmt::Display for WithCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot close listener")
    }
}
impl std::error::Error for WithCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&Cause)
    }
}

impl Resource for Recorder {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        self.log.push(format!("{}:checkpoint", self.name));
        match self.behaviour {
            Behaviour::FailCheckpoint => Err(Box::new(WithCause)),
            Behaviour::PanicCheckpoint => panic!("{} exploded", self.name),
            _ => Ok(()),
        }
    }

    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        self.log.push(format!("{}:{}", self.name, outcome(event)));
        match self.behaviour {
            Behaviour::FailRestore => Err("could not reconnect".into()),
            _ => Ok(()),
        }
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }

    fn rank(&self) -> u32 {
        self.rank
    }
}

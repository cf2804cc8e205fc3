//! A participant of one checkpoint: a registered resource or a link-time hook, and the
//! two passes over an ordered list of them.

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::{Failure, Failures, Phase, catch_panic};
use crate::event::{Checkpoint, Restore};
use crate::hooks::{HookFn, StaticHook};
use crate::ordering::{Seq, sort_for_checkpoint};
use crate::resource::{BoxError, Resource};

#[derive(Clone)]
pub(crate) enum Participant {
    Resource(Arc<dyn Resource>),
    Hook(&'static StaticHook),
}

#[derive(Clone)]
pub(crate) struct Ranked {
    pub participant: Participant,
    pub rank: u32,
    seq: Seq,
}

impl Participant {
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Participant::Resource(resource) => resource.name(),
            Participant::Hook(hook) => Cow::Borrowed(hook.name),
        }
    }

    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        match self {
            Participant::Resource(resource) => resource.before_checkpoint(event),
            Participant::Hook(StaticHook {
                run: HookFn::BeforeCheckpoint(hook),
                ..
            }) => hook(event),
            Participant::Hook(_) => Ok(()),
        }
    }

    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        match self {
            Participant::Resource(resource) => resource.after_restore(event),
            Participant::Hook(StaticHook {
                run: HookFn::OnRestore(hook),
                ..
            }) => hook(event),
            Participant::Hook(_) => Ok(()),
        }
    }
}

impl Ranked {
    pub(crate) fn resource(resource: Arc<dyn Resource>, rank: u32, seq: Seq) -> Ranked {
        Ranked {
            participant: Participant::Resource(resource),
            rank,
            seq,
        }
    }
}

/// Live resources (in registration order) and hooks (sorted by full path), in checkpoint order.
pub(crate) fn in_checkpoint_order(
    mut live: Vec<Ranked>,
    hooks: &[&'static StaticHook],
) -> Vec<Ranked> {
    live.reverse();
    live.extend(hooks.iter().enumerate().rev().map(|(i, &hook)| Ranked {
        participant: Participant::Hook(hook),
        rank: hook.rank,
        seq: Seq::Static(i),
    }));
    sort_for_checkpoint(&mut live, |p| (p.rank, p.seq));
    live
}

/// Notifies every participant, even after one failed, and returns every failure.
pub(crate) fn checkpoint_pass(plan: &[Ranked], event: &Checkpoint) -> Failures {
    let mut failures = Failures::default();
    for ranked in plan {
        let p = &ranked.participant;
        if let Err(error) = catch_panic(|| p.before_checkpoint(event)) {
            failures.0.push(Failure {
                resource: p.name().into_owned(),
                phase: Phase::BeforeCheckpoint,
                error,
            });
        }
    }
    failures
}

/// The exact reverse of [`checkpoint_pass`].
pub(crate) fn restore_pass(plan: &[Ranked], event: &Restore) -> Failures {
    let mut failures = Failures::default();
    for ranked in plan.iter().rev() {
        let p = &ranked.participant;
        if let Err(error) = catch_panic(|| p.after_restore(event)) {
            failures.0.push(Failure {
                resource: p.name().into_owned(),
                phase: Phase::AfterRestore,
                error,
            });
        }
    }
    failures
}

//! A participant of one checkpoint — a registered resource, a nested group of them, or a
//! link-time hook — and the two passes over an ordered list of them.

use std::borrow::Cow;
use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::deadline;
use crate::error::{BoxError, Failure, Failures, Phase};
use crate::event::{Checkpoint, Restore};
use crate::hooks::{HookFn, StaticHook};
use crate::ordering::{RegistrationOrder, sort_for_checkpoint};
use crate::resource::Resource;

/// A resource that holds other participants (a [`Context`](crate::Context)): plans list
/// its members after it, one level deeper.
pub(crate) trait Group: Resource {
    /// Calls `visit` with the members a plan shows, unless this group is already being
    /// walked by this thread (it was registered inside itself).
    fn visit_members(&self, visit: &mut dyn FnMut(&[RankedParticipant]));
}

#[derive(Clone)]
pub(crate) enum Participant {
    Resource(Arc<dyn Resource>),
    Group(Arc<dyn Group>),
    Hook(&'static StaticHook),
}

/// A participant as the registry holds it: weakly, so that dropping it unregisters it.
pub(crate) enum WeakParticipant {
    Resource(Weak<dyn Resource>),
    Group(Weak<dyn Group>),
}

/// A participant with its place in the order.
#[derive(Clone)]
pub(crate) struct RankedParticipant {
    pub(crate) participant: Participant,
    pub(crate) rank: u32,
    order: RegistrationOrder,
    /// Where it was registered, or where a hook function is written.
    pub(crate) location: &'static Location<'static>,
}

impl Participant {
    pub(crate) fn name(&self) -> Cow<'_, str> {
        match self {
            Participant::Resource(resource) => resource.name(),
            Participant::Group(group) => group.name(),
            Participant::Hook(hook) => Cow::Borrowed(hook.name),
        }
    }

    /// Identifies the registered object, so that one registered twice counts once.
    pub(crate) fn address(&self) -> usize {
        match self {
            Participant::Resource(resource) => Arc::as_ptr(resource) as *const () as usize,
            Participant::Group(group) => Arc::as_ptr(group) as *const () as usize,
            Participant::Hook(hook) => *hook as *const StaticHook as usize,
        }
    }

    /// Its own deadline. A group has none: its members' deadlines bound it.
    fn deadline(&self) -> Option<Duration> {
        match self {
            Participant::Resource(resource) => resource.deadline(),
            Participant::Group(_) => None,
            Participant::Hook(hook) => hook.deadline,
        }
    }

    /// Its own deadline, else its context's default for members, else the process's.
    fn deadline_within(
        &self,
        members: Option<Duration>,
        process: Option<Duration>,
    ) -> Option<Duration> {
        match self {
            Participant::Group(_) => None,
            _ => self.deadline().or(members).or(process),
        }
    }

    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        match self {
            Participant::Resource(resource) => resource.before_checkpoint(event),
            Participant::Group(group) => group.before_checkpoint(event),
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
            Participant::Group(group) => group.after_restore(event),
            Participant::Hook(StaticHook {
                run: HookFn::OnRestore(hook),
                ..
            }) => hook(event),
            Participant::Hook(_) => Ok(()),
        }
    }
}

impl WeakParticipant {
    pub(crate) fn upgrade(&self) -> Option<Participant> {
        match self {
            WeakParticipant::Resource(weak) => weak.upgrade().map(Participant::Resource),
            WeakParticipant::Group(weak) => weak.upgrade().map(Participant::Group),
        }
    }

    pub(crate) fn is_dropped(&self) -> bool {
        match self {
            WeakParticipant::Resource(weak) => weak.strong_count() == 0,
            WeakParticipant::Group(weak) => weak.strong_count() == 0,
        }
    }
}

impl RankedParticipant {
    pub(crate) fn registered(
        participant: Participant,
        rank: u32,
        seq: u64,
        location: &'static Location<'static>,
    ) -> Self {
        RankedParticipant {
            participant,
            rank,
            order: RegistrationOrder::Dynamic(seq),
            location,
        }
    }
}

/// Live registered participants (in registration order) and hooks (sorted by full
/// path), in checkpoint order.
pub(crate) fn in_checkpoint_order(
    mut live: Vec<RankedParticipant>,
    hooks: &[&'static StaticHook],
) -> Vec<RankedParticipant> {
    live.reverse();
    live.extend(
        hooks
            .iter()
            .enumerate()
            .rev()
            .map(|(i, &hook)| RankedParticipant {
                participant: Participant::Hook(hook),
                rank: hook.rank,
                order: RegistrationOrder::Static(i),
                location: hook.location,
            }),
    );
    sort_for_checkpoint(&mut live, |p| (p.rank, p.order));
    live
}

/// Notifies every participant, even after one failed, and returns every failure.
/// `members` is the deadline of members without one of their own.
pub(crate) fn checkpoint_pass(
    plan: &[RankedParticipant],
    event: &Checkpoint,
    members: Option<Duration>,
) -> Failures {
    let hook = |p: &Participant, event: &Checkpoint| p.before_checkpoint(event);
    notify(
        plan.iter(),
        event,
        event.hook_deadline,
        members,
        Phase::BeforeCheckpoint,
        hook,
    )
}

/// The exact reverse of [`checkpoint_pass`].
pub(crate) fn restore_pass(
    plan: &[RankedParticipant],
    event: &Restore,
    members: Option<Duration>,
) -> Failures {
    let hook = |p: &Participant, event: &Restore| p.after_restore(event);
    notify(
        plan.iter().rev(),
        event,
        event.hook_deadline,
        members,
        Phase::AfterRestore,
        hook,
    )
}

/// One pass: `hook` for each participant in `order`, inline or under its deadline.
fn notify<'a, E: Clone + Send + 'static>(
    order: impl Iterator<Item = &'a RankedParticipant>,
    event: &E,
    hook_deadline: Option<Duration>,
    members: Option<Duration>,
    phase: Phase,
    hook: fn(&Participant, &E) -> Result<(), BoxError>,
) -> Failures {
    let mut failures = Failures::default();
    for ranked in order {
        let p = &ranked.participant;
        let result = match p.deadline_within(members, hook_deadline) {
            None => deadline::run_inline(p.address(), || hook(p, event)),
            Some(limit) => {
                let (owned, event) = (p.clone(), event.clone());
                let run = move || hook(&owned, &event);
                deadline::run_within(p.address(), &p.name(), phase, limit, run)
            }
        };
        if let Err(error) = result {
            failures.0.push(Failure {
                resource: p.name().into_owned(),
                phase,
                error,
            });
        }
    }
    failures
}

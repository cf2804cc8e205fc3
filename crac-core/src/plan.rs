//! Introspection: the ordered list of participants a checkpoint would notify.

use std::fmt;

use crate::hooks::HookFn;
use crate::participant::{Participant, Ranked};

/// What kind of participant a [`PlanEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A registered [`Resource`](crate::Resource).
    Resource,
    /// A registered [`Context`](crate::Context); its members follow at `depth + 1`.
    Context,
    /// A `#[before_checkpoint]` function.
    BeforeCheckpoint,
    /// An `#[on_restore]` function.
    OnRestore,
}

/// One participant of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// The participant's name.
    pub name: String,
    /// Its rank in the dependency graph.
    pub rank: u32,
    /// What it is.
    pub kind: Kind,
    /// 0 for the global context's members, 1 for members of a context registered there...
    pub depth: usize,
}

/// The participants of a checkpoint in the order `before_checkpoint` reaches them;
/// `after_restore` goes through them in reverse. Contexts are followed by their members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Entries in checkpoint order.
    pub entries: Vec<PlanEntry>,
}

impl Plan {
    /// The names of the entries, in checkpoint order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    pub(crate) fn of(participants: &[Ranked]) -> Plan {
        let mut plan = Plan::default();
        plan.extend(participants, 0);
        plan
    }

    pub(crate) fn extend(&mut self, participants: &[Ranked], depth: usize) {
        for ranked in participants {
            let p = &ranked.participant;
            let kind = match p {
                Participant::Resource(r) if r.as_context().is_some() => Kind::Context,
                Participant::Resource(_) => Kind::Resource,
                Participant::Hook(hook) => match hook.run {
                    HookFn::BeforeCheckpoint(_) => Kind::BeforeCheckpoint,
                    HookFn::OnRestore(_) => Kind::OnRestore,
                },
            };
            self.entries.push(PlanEntry {
                name: p.name().into_owned(),
                rank: ranked.rank,
                kind,
                depth,
            });
            if let Participant::Resource(r) = p
                && let Some(context) = r.as_context()
                && let Ok(_active) = context.enter()
            {
                self.extend(&context.members_for_plan(), depth + 1);
            }
        }
    }
}

impl Kind {
    /// `resource`, `context`, `before_checkpoint` or `on_restore`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Resource => "resource",
            Kind::Context => "context",
            Kind::BeforeCheckpoint => "before_checkpoint",
            Kind::OnRestore => "on_restore",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let (name, rank, kind) = (&e.name, e.rank, e.kind.as_str());
            writeln!(
                f,
                "{:indent$}{name} [rank {rank}, {kind}]",
                "",
                indent = 2 * e.depth
            )?;
        }
        Ok(())
    }
}

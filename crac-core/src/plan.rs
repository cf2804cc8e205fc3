//! Introspection: the ordered list of participants a checkpoint would notify.

use std::fmt;
use std::panic::Location;

use crate::hooks::HookFn;
use crate::participant::{Participant, RankedParticipant};

/// What kind of participant a [`PlanEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlanEntryKind {
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
    pub kind: PlanEntryKind,
    /// 0 for the global context's members, 1 for members of a context registered there...
    pub depth: usize,
    /// Where it comes from: the `register` call that added it, or the hook function.
    pub location: &'static Location<'static>,
}

impl PlanEntry {
    /// `name (file:line)`, as plans, `crac inspect` and the image manifest show it.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// #[derive(crac::Checkpointable)]
    /// #[crac(name = "cache")]
    /// struct Cache;
    ///
    /// let cache = Arc::new(Cache);
    /// crac::register(&cache); // this line
    /// let entry = crac::plan().entries.into_iter().find(|e| e.name == "cache").unwrap();
    /// assert_eq!(entry.name_and_location(), format!("cache ({}:{})", file!(), line!() - 2));
    /// ```
    pub fn name_and_location(&self) -> String {
        format!(
            "{} ({}:{})",
            self.name,
            self.location.file(),
            self.location.line()
        )
    }
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

    pub(crate) fn of(participants: &[RankedParticipant]) -> Plan {
        let mut plan = Plan::default();
        plan.extend(participants, 0);
        plan
    }

    fn extend(&mut self, participants: &[RankedParticipant], depth: usize) {
        for ranked in participants {
            let p = &ranked.participant;
            let kind = match p {
                Participant::Group(_) => PlanEntryKind::Context,
                Participant::Resource(_) => PlanEntryKind::Resource,
                Participant::Hook(hook) => match hook.run {
                    HookFn::BeforeCheckpoint(_) => PlanEntryKind::BeforeCheckpoint,
                    HookFn::OnRestore(_) => PlanEntryKind::OnRestore,
                },
            };
            self.entries.push(PlanEntry {
                name: p.name().into_owned(),
                rank: ranked.rank,
                kind,
                depth,
                location: ranked.location,
            });
            if let Participant::Group(group) = p {
                group.visit_members(&mut |members| self.extend(members, depth + 1));
            }
        }
    }
}

impl PlanEntryKind {
    /// `resource`, `context`, `before_checkpoint` or `on_restore`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanEntryKind::Resource => "resource",
            PlanEntryKind::Context => "context",
            PlanEntryKind::BeforeCheckpoint => "before_checkpoint",
            PlanEntryKind::OnRestore => "on_restore",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let (name, rank, kind) = (e.name_and_location(), e.rank, e.kind.as_str());
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

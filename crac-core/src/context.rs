//! [`Context`]: a named group of resources that is itself a resource, and the global one.

use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::panic::Location;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::hooks;
use crate::participant::{self, Group, RankedParticipant, WeakParticipant};
use crate::plan::Plan;
use crate::registry::Registry;
use crate::resource::Resource;

/// A named group of resources, notified in dependency and registration order when the
/// context itself is notified.
///
/// Contexts nest: register one into another (or into the global context with
/// [`register`]) and its members are notified at that position. Members are held weakly.
///
/// ```
/// use std::sync::{Arc, Mutex, PoisonError};
/// use crac::Context;
///
/// let db = Arc::new(Context::new("db"));
/// crac::register(&db);
/// // db.register(&pool); db.register(&cache); ...
/// ```
pub struct Context {
    name: Cow<'static, str>,
    registry: Registry,
    /// The deadline of members' hooks that have none of their own.
    deadline: Option<Duration>,
    /// The members notified by the last `before_checkpoint`: `after_restore` walks exactly
    /// these back, even if the registry changed in between.
    notified: Mutex<Vec<RankedParticipant>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

thread_local! {
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A context being walked by this thread; leaves the walk when dropped.
struct Active;

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with_borrow_mut(|active| active.pop());
    }
}

static GLOBAL: Context = Context::named(Cow::Borrowed("global"));

/// The context [`register`] adds to and [`checkpoint_restore`](crate::checkpoint_restore) notifies.
pub fn global() -> &'static Context {
    &GLOBAL
}

/// Registers `resource` into the global context. It is held weakly: once the last `Arc`
/// is dropped, it is no longer notified. Plans show where it was registered: the
/// caller's file and line.
#[track_caller]
pub fn register<R: Resource>(resource: &Arc<R>) {
    GLOBAL.register_at(resource, Location::caller());
}

impl Context {
    /// An empty context; `name` appears in plans and errors.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Context::named(name.into())
    }

    const fn named(name: Cow<'static, str>) -> Self {
        Context {
            name,
            registry: Registry::new(),
            deadline: None,
            notified: Mutex::new(Vec::new()),
        }
    }

    /// Gives every member whose hooks have no deadline of their own (from
    /// [`Resource::deadline`], `#[crac(deadline = "...")]`) this one, instead of
    /// `CRAC_HOOK_DEADLINE`'s. Members of contexts nested in this one follow their own
    /// context's.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let clients = crac::Context::new("clients").with_deadline(Duration::from_secs(2));
    /// ```
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Adds `resource` to this context, weakly.
    #[track_caller]
    pub fn register<R: Resource>(&self, resource: &Arc<R>) {
        self.register_at(resource, Location::caller());
    }

    /// [`Context::register`], shown in plans as registered at `location`: for wrappers
    /// that register on their caller's behalf.
    pub(crate) fn register_at<R: Resource>(
        &self,
        resource: &Arc<R>,
        location: &'static Location<'static>,
    ) {
        let rank = resource.rank();
        // A nested context is a group its plan looks into; resolved per type at compile time.
        let participant = match (resource as &dyn Any).downcast_ref::<Arc<Context>>() {
            Some(context) => WeakParticipant::Group(Arc::downgrade(context) as Weak<dyn Group>),
            None => WeakParticipant::Resource(Arc::downgrade(resource) as Weak<dyn Resource>),
        };
        self.registry.register(participant, rank, location);
    }

    /// This context's members in checkpoint order, nested contexts expanded.
    pub fn plan(&self) -> Plan {
        Plan::of(&self.members())
    }

    fn members(&self) -> Vec<RankedParticipant> {
        participant::in_checkpoint_order(self.registry.live(), &[])
    }

    /// During a checkpoint, the members actually notified; otherwise the current ones.
    fn members_for_plan(&self) -> Vec<RankedParticipant> {
        let notified = self.notified.lock().unwrap_or_else(PoisonError::into_inner);
        if notified.is_empty() {
            drop(notified);
            self.members()
        } else {
            notified.clone()
        }
    }

    /// Marks this context as being walked by this thread, or refuses if it already is:
    /// a context registered (directly or through others) inside itself would recurse
    /// forever.
    fn enter(&self) -> Result<Active, BoxError> {
        let address = self as *const Context as usize;
        ACTIVE.with_borrow_mut(|active| {
            if active.contains(&address) {
                return Err(format!(
                    "context `{}` is registered inside itself (directly or through nested \
                     contexts); register it in one place only",
                    self.name
                )
                .into());
            }
            active.push(address);
            Ok(Active)
        })
    }
}

/// The global context's members and the link-time hooks, in checkpoint order: what
/// [`checkpoint_restore`](crate::checkpoint_restore) notifies.
pub(crate) fn global_participants() -> Vec<RankedParticipant> {
    participant::in_checkpoint_order(GLOBAL.registry.live(), hooks::all())
}

impl Resource for Context {
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        let _active = self.enter()?;
        let members = self.members();
        let failures = participant::checkpoint_pass(&members, event, self.deadline);
        *self.notified.lock().unwrap_or_else(PoisonError::into_inner) = members;
        failures.into_result()
    }

    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        let _active = self.enter()?;
        let members =
            std::mem::take(&mut *self.notified.lock().unwrap_or_else(PoisonError::into_inner));
        participant::restore_pass(&members, event, self.deadline).into_result()
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }
}

impl Group for Context {
    fn visit_members(&self, visit: &mut dyn FnMut(&[RankedParticipant])) {
        if let Ok(_active) = self.enter() {
            visit(&self.members_for_plan());
        }
    }
}

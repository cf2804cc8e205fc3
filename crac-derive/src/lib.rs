//! The procedural macros of crac-rs. Use them through the `crac` crate, which re-exports
//! them: the generated code refers to `::crac` only.
//!
//! Each macro goes parse (`attr`) → validate → expand, reports every mistake of an
//! item in one compilation, and after an error still emits a minimal valid
//! implementation so that one mistake does not cascade into more errors.

use proc_macro::TokenStream;

mod attr;
mod call;
mod checkpointable;
mod deadline;
mod hook_fn;
mod rank;
mod rng;
mod symbol;
mod test_fn;

/// Implements `crac::Resource` for a struct, from attributes on the struct and its fields.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use crac::{BoxError, Checkpoint, Checkpointable, Restore};
/// # #[derive(Checkpointable)] struct Database;
/// # #[derive(Checkpointable)] struct Connection;
/// # #[crac::before_checkpoint] fn flush_logs() {}
/// # mod metrics {
/// #     pub fn before_checkpoint(_: &u64, _: &crac::Checkpoint) {}
/// #     pub fn after_restore(_: &u64, _: &crac::Restore) {}
/// # }
///
/// #[derive(Checkpointable)]
/// #[crac(name = "sessions", depends_on(Database, flush_logs))]
/// #[crac(before_checkpoint = Self::close, after_restore = Self::reopen)]
/// struct Sessions {
///     #[crac(resource)]
///     connection: Arc<Mutex<Connection>>,
///     #[crac(with = metrics)]
///     counter: u64,
///     #[crac(reseed)]
///     ids: Mutex<rand::rngs::StdRng>,
///     #[crac(secret, reload = Self::load_key)]
///     key: Mutex<String>,
///     #[crac(reopen)]
///     journal: Mutex<std::fs::File>,
///     #[crac(restore_env = "SESSION_TTL")]
///     ttl_seconds: std::sync::atomic::AtomicU64,
///     #[crac(skip)]
///     config: String,
/// }
///
/// impl Sessions {
///     fn close(&self, _: &Checkpoint) -> Result<(), BoxError> { Ok(()) }
///     fn reopen(&self, _: &Restore) {}
///     fn load_key(&self) -> Result<String, BoxError> { Ok("fresh".into()) }
/// }
/// ```
///
/// # Struct attributes
///
/// - `#[crac(name = "...")]`: the name used in plans and errors, instead of the type name.
/// - `#[crac(depends_on(A, b_hook, path::C))]`: this resource uses these participants
///   (`Checkpointable` types, or functions marked `#[crac::before_checkpoint]` /
///   `#[crac::on_restore]`), so it is notified before them at checkpoint and after them at
///   restore. The order is computed at compile time: a dependency cycle is a compile
///   error (E0391, "cycle detected").
/// - `#[crac(before_checkpoint = path)]`, `#[crac(after_restore = path)]`: the type's own
///   logic, called as `path(self, event)`: usually `Self::method` with
///   `fn method(&self, event: &Checkpoint)` (or `&Restore`), returning `()` or
///   `Result<(), E>` where `E: Into<crac::BoxError>`.
/// - `#[crac(deadline = "2s")]`: each of the type's hooks (its own logic and its fields'
///   steps together) may run that long, on a thread of its own: a whole number of `ms`,
///   `s` or `m`. An overrun refuses the checkpoint or fails the restore; the hook keeps
///   running and its result is ignored (see `crac::DeadlineExceeded`).
///
/// # Field attributes
///
/// A field does one of these; fields without an attribute are left alone.
///
/// - `#[crac(resource)]`: forwards both hooks to the field, a `crac::Resource`, possibly
///   inside `Arc`, `Option`, `Mutex` or `RwLock`; trait objects too (`Arc<dyn Resource>`).
/// - `#[crac(with = module)]`: calls `module::before_checkpoint(&self.field, event)` and
///   `module::after_restore(&self.field, event)`, each returning `()` or `Result<(), E>`.
///   For types you cannot derive or implement `Resource` for.
/// - `#[crac(reseed)]`: after restore, re-seeds a random generator from OS entropy
///   (`Mutex<R>` or `RwLock<R>` for any rand 0.10 generator, with crac's `rand` feature;
///   see `crac::field::Reseed`), so that restored copies do not share a random sequence.
/// - `#[crac(same_in_every_copy)]`: a random generator deliberately left as it is, so
///   that every restored copy continues the same sequence (a replayed fixture, a
///   simulation that must be reproducible). Nothing runs for it; it only says so (see
///   *Random generators* below).
/// - `#[crac(secret)]`: before checkpoint, wipes the value so that it never reaches the
///   image (`Mutex<Z>` or `RwLock<Z>` for any `zeroize::Zeroize` value, with crac's
///   `zeroize` feature; see `crac::field::Secret`). Freed copies of it must not reach the
///   image either: the checkpoint is refused unless the program's global allocator is a
///   `crac::ScrubbingAlloc`, which zeroes every block it frees.
/// - `#[crac(secret, reload = path)]`: also, after restore, installs `path(self)?`, where
///   `path` returns `Result<Value, E>` (`E: Into<crac::BoxError>`), e.g.
///   `Self::load_key` with `fn load_key(&self) -> Result<String, BoxError>`.
/// - `#[crac(restore_env = "NAME")]`: after a restore, if the restorer passed `NAME`
///   (`crac restore IMAGE --env NAME=VALUE`, `crac run --env`), parses it with `FromStr`
///   and stores it, before the type's own `after_restore`: `Mutex<T>` or `RwLock<T>` for
///   `T: FromStr` (its error `Display`), an atomic integer or `AtomicBool` (see
///   `crac::field::RestoreEnv`). A value that does not parse fails the restore, naming
///   the variable, the value and the type, and the field keeps its value. Without the
///   variable, or after a rollback or a left-running checkpoint, the field is left alone.
///   Only the restorer's variables count: a restored process keeps the environment it
///   was checkpointed with.
/// - `#[crac(restore_env("NAME", required))]`: the same, and a restore without `NAME`
///   fails naming it. `restore_env("NAME")` is `restore_env = "NAME"`.
/// - `#[crac(reopen)]`: a `std::fs::File` in `Mutex`/`RwLock`, possibly as `Option<File>`
///   (see `crac::field::Reopen`; Linux), closed before the checkpoint and opened again
///   after it by path, with the same access mode and flags (an append-mode file stays
///   append) and at the same offset, as recorded from `/proc/self/fd` and
///   `/proc/self/fdinfo`. Until it is back, the field holds a placeholder — `/dev/null`,
///   read-only: writes fail, reads see end of file — claimed for the open-resource check,
///   so no `claim_fd` is needed. It is reopened after a restore, on rollback and after a
///   left-running checkpoint; whatever file is at the path then is the one opened (a
///   rotated log: the new file, at the recorded offset). A missing file fails the restore
///   naming its path, and the placeholder stays. A file deleted while open, or an fd
///   that is not a file on a path, refuses the checkpoint.
/// - `#[crac(reopen(path_env = "VAR", create))]`, either option alone too: after a restore
///   whose restorer passed `VAR` (`--env VAR=/new/path`), opens that path instead;
///   `create` creates a missing file (written from its start).
/// - `#[crac(skip)]`: explicitly nothing, to document that the field survives a
///   checkpoint as is. Combines with no other option.
///
/// # Random generators
///
/// Every restored copy continues from the state the image holds, so a generator held as
/// is draws the same numbers in every copy: the same "random" session ids, nonces or
/// backoff jitter. A field whose type is a well-known generator must therefore say what
/// it wants, or the derive is a compile error naming the field and its type:
/// `#[crac(reseed)]`, or `#[crac(same_in_every_copy)]` when sharing the sequence is
/// meant (`skip` is not enough: it does not say so). Recognised, by the type's name as
/// written, also inside `Mutex`, `RwLock`, `RefCell`, `Cell`, `Option`, `Arc`, `Box`,
/// `Rc`, `OnceLock` and `OnceCell`: rand's `StdRng`, `SmallRng` and `ThreadRng`,
/// rand_chacha's `ChaCha8Rng`/`ChaCha12Rng`/`ChaCha20Rng`, rand_pcg's `Pcg*`,
/// rand_xoshiro's `Xoshiro*`/`Xoroshiro*`/`SplitMix*`, `IsaacRng`, `Isaac64Rng`,
/// `Hc128Rng`, `XorShiftRng`, fastrand's `Rng`, oorandom's `Rand32`/`Rand64` and
/// nanorand's `WyRand`. A type alias, or a generator inside a type of your own, is not
/// seen: reseed those in your own `after_restore`.
///
/// ```compile_fail
/// # use std::sync::Mutex;
/// #[derive(crac::Checkpointable)]
/// struct Sessions {
///     ids: Mutex<rand::rngs::StdRng>, // error: add `#[crac(reseed)]` or `#[crac(same_in_every_copy)]`
/// }
/// ```
///
/// # Order and failures
///
/// Before checkpoint: the type's own `before_checkpoint`, then the fields from the last
/// one to the first. After restore, the exact reverse: the fields from the first to the
/// last, then the type's own `after_restore`. Every step runs even if an earlier one
/// failed (or panicked); the failures are reported together, named `Type.field` (the
/// index for tuple fields), or `Type` for the type's own hooks.
///
/// # Generics
///
/// Type and const parameters are supported; `Resource` is implemented where the type
/// itself is `Send + Sync + 'static` (one bound, `Pool<C>: Send + Sync + 'static`, not
/// one per parameter: `struct Pool<C> { conn: Mutex<C> }` is a resource for any
/// `C: Send + 'static`, `Sync` or not). Bounds the field options need are written on the
/// struct, e.g. `struct Pool<C: crac::Resource> { #[crac(resource)] conn: C }`. Lifetime
/// parameters are rejected: a registered resource lives as long as the process.
///
/// # Errors
///
/// Mistakes in the attributes are compile errors at the offending tokens, all reported
/// at once: unknown or duplicated options, wrong values, conflicting field options, a
/// field type the option cannot handle, a function with the wrong signature, a
/// dependency that is not a crac participant, a dependency cycle.
#[proc_macro_derive(Checkpointable, attributes(crac))]
pub fn derive_checkpointable(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    checkpointable::derive(input).into()
}

/// Runs a free function before every checkpoint.
///
/// ```
/// use crac::{BoxError, Checkpoint};
///
/// #[crac::before_checkpoint]
/// fn flush_logs() {}
///
/// #[crac::before_checkpoint(depends_on(flush_logs), name = "close the log file")]
/// fn close_log(event: &Checkpoint) -> Result<(), BoxError> {
///     println!("checkpoint #{}", event.generation);
///     Ok(())
/// }
/// ```
///
/// The function takes no argument or `&crac::Checkpoint`, and returns `()` or
/// `Result<(), E>` where `E: Into<crac::BoxError>`; it may be an `async fn` with the `tokio`
/// feature (it then runs on the application's runtime), and cannot be a method,
/// `const`, `unsafe`, `extern` or generic. It is registered at link time: no call is
/// needed, and it takes part in every checkpoint of the program.
///
/// Arguments, all optional:
///
/// - `depends_on(A, b_hook, path::C)`: `Checkpointable` types or other hook functions this
///   function uses; it runs before them at checkpoint. Cycles are compile errors.
/// - `name = "..."`: the name in plans and errors; defaults to the function's full path
///   (`my_crate::module::function`). It changes nothing else: among participants of
///   equal rank, hook functions are still ordered by their full path.
/// - `deadline = "500ms"`: how long it may run (`ms`, `s` or `m`), on a thread of its
///   own; an overrun refuses the checkpoint (see `crac::DeadlineExceeded`).
///
/// The function can itself be named in `depends_on(...)`: next to it, the macro
/// declares a hidden type of the same name (types and functions live in different
/// namespaces), so the function must not share its name with a type in its module, and
/// must be a free function rather than an associated one.
///
/// That type is named like the function, in snake case, but as the macro's own code: no
/// lint reports it, and it compiles under `#![forbid(non_camel_case_types)]` or
/// `forbid(dead_code)`. The registration, however, goes through `inventory::submit!`,
/// whose static carries `#[allow(non_upper_case_globals)]`, and an `allow` cannot
/// override a `forbid`: under `#![forbid(non_upper_case_globals)]` the function is an
/// error (E0453), and under `#![forbid(nonstandard_style)]` a future-incompatibility
/// warning (`forbidden_lint_groups`). Use `deny` for those lints where hooks are
/// declared.
#[proc_macro_attribute]
pub fn before_checkpoint(args: TokenStream, item: TokenStream) -> TokenStream {
    hook_fn::expand(
        hook_fn::HookKind::BeforeCheckpoint,
        args.into(),
        item.into(),
    )
    .into()
}

/// Runs a free function after every restore (and after a checkpoint that leaves the
/// process running or is rolled back: see `crac::Restore::outcome`).
///
/// ```
/// use crac::Restore;
///
/// #[crac::on_restore]
/// fn reconnect(restore: &Restore) {
///     println!("running again: {:?}", restore.outcome());
/// }
///
/// #[crac::on_restore(depends_on(reconnect))]
/// fn warm_up() -> Result<(), std::io::Error> {
///     Ok(())
/// }
/// ```
///
/// The function takes no argument or `&crac::Restore`, and returns `()` or
/// `Result<(), E>` where `E: Into<crac::BoxError>`. Arguments and restrictions are those
/// of [`macro@before_checkpoint`]: `depends_on(...)`, `name = "..."` and
/// `deadline = "..."` (an overrun fails the restore; the process runs on). A function
/// runs after its dependencies at restore (`warm_up` after `reconnect` above).
///
/// Like [`macro@before_checkpoint`], it declares a hidden type named like the function,
/// and cannot be used under `#![forbid(non_upper_case_globals)]` (nor, in the future,
/// `#![forbid(nonstandard_style)]`): use `deny` there.
#[proc_macro_attribute]
pub fn on_restore(args: TokenStream, item: TokenStream) -> TokenStream {
    hook_fn::expand(hook_fn::HookKind::OnRestore, args.into(), item.into()).into()
}

/// A test whose setup runs in a process of its own, which is checkpointed with CRIU and
/// restored as `copies` concurrent copies (default 1); each copy sends a value back.
///
/// ```no_run
/// use std::sync::{Arc, Mutex};
/// use crac::Checkpointable;
/// use rand::{RngExt, SeedableRng, rngs::StdRng};
///
/// #[derive(Checkpointable)]
/// struct Ids {
///     #[crac(reseed)]
///     rng: Mutex<StdRng>,
/// }
///
/// #[crac::test(copies = 3)]
/// fn restored_copies_draw_different_ids(trial: crac::testing::Trial) {
///     let draws: Vec<u64> = trial.run(
///         || {
///             // setup: runs once, in the process that is checkpointed
///             let ids = Arc::new(Ids { rng: Mutex::new(StdRng::seed_from_u64(7)) });
///             crac::register(&ids);
///             ids
///         },
///         // runs in each restored copy; its value comes back here
///         |ids, _restore| ids.rng.lock().unwrap().random(),
///     );
///     assert_ne!(draws[0], draws[1]);
///     assert_ne!(draws[1], draws[2]);
/// }
/// ```
///
/// It needs crac's `testing` feature, for tests only (without it the test is a compile
/// error naming the feature):
///
/// ```toml
/// [dev-dependencies]
/// crac = { version = "0.1", features = ["testing"] }
/// ```
///
/// The function takes a `crac::testing::Trial` (see it for what runs where) and may
/// return what a `#[test]` may. Its attributes stay on the test (`#[ignore]`,
/// `#[should_panic]`, docs); `#[test]` itself must not be added.
///
/// The test needs root, CRIU (where the criu engine finds it) and the `crac` command
/// (see `Trial`). Where CRIU cannot run, the test is marked ignored with the reason, as
/// found when the test is compiled — `cargo test -- --include-ignored` runs it anyway,
/// and it then fails naming what is missing. Under `CI=true` nothing is ignored: a test
/// that cannot run fails.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    test_fn::expand(args.into(), item.into()).into()
}

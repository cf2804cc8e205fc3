//! Every environment variable crac-rs reads, in one table ([`VARIABLES`]): the settings
//! a user gives, and those crac's own processes pass each other (set by crac itself).
//! The guide's `docs/configuration.md` shows the same table; a test keeps them equal.
//! Code names a variable by its constant here (crac-core's two by `crac_core::env`);
//! `crac --help` lists the settings ([`environment_help`]).

pub(crate) use crac_core::env::{ENGINE, HOOK_DEADLINE};

/// The image directory a checkpoint writes (like `-XX:CRaCCheckpointTo`).
pub(crate) const CHECKPOINT_TO: &str = "CRAC_CHECKPOINT_TO";
/// The `criu` binary.
pub(crate) const CRIU: &str = crac_shared::criu::CRIU_ENV;
/// The file of the key images are sealed with.
pub(crate) const IMAGE_KEY: &str = "CRAC_IMAGE_KEY";
/// The directory `crac restore FILE` unpacks packed images into.
pub(crate) const IMAGE_CACHE: &str = "CRAC_IMAGE_CACHE";
/// The most bytes of unpacked images that cache keeps.
pub(crate) const IMAGE_CACHE_BYTES: &str = "CRAC_IMAGE_CACHE_BYTES";
/// The age identity file that decrypts encrypted packed images.
pub(crate) const PACK_IDENTITY: &str = "CRAC_PACK_IDENTITY";
/// `off`: `crac::MappedHeap` allocates as the system allocator, writing no heap files.
pub(crate) const MAPPED_HEAP: &str = "CRAC_MAPPED_HEAP";
/// Extra CRIU options for the dump.
pub(crate) const CRIU_OPTS: &str = "CRAC_CRIU_OPTS";
/// `1`: the process keeps running after its image is taken.
pub(crate) const LEAVE_RUNNING: &str = "CRAC_LEAVE_RUNNING";
/// What the open-resource check does with unclaimed fds.
pub(crate) const FD_POLICY: &str = "CRAC_FD_POLICY";
/// CRIU's log verbosity.
pub(crate) const LOG: &str = "CRAC_LOG";
/// The secret environment variables, wiped before the dump.
pub(crate) const SECRET_ENV: &str = "CRAC_SECRET_ENV";
/// `1`: the process was started to produce an image; `crac::ready()` checkpoints it.
pub(crate) const ON_READY: &str = "CRAC_CHECKPOINT_ON_READY";
/// Seconds between checkpoints taken at consistent points.
pub(crate) const INTERVAL: &str = "CRAC_CHECKPOINT_INTERVAL";
/// `1`: `crac` restores images that a user other than root and the one restoring owns or
/// can write (`image/ownership.rs`).
pub(crate) const INSECURE_IMAGE_PERMISSIONS: &str = "CRAC_INSECURE_IMAGE_PERMISSIONS";
/// Set for an application `crac run` started (and so in every copy restored from its
/// images): `crac run` takes its images, a direct `checkpoint_restore()` is refused.
pub(crate) const MANAGED: &str = "CRAC_RUN";
/// `private`: the process runs as PID 2 of its own namespace, under `crac __init`.
pub(crate) const PID_NAMESPACE: &str = "CRAC_PID_NAMESPACE";
/// `rootless`: the process runs in the user namespace `crac` made for rootless mode.
pub(crate) const USER_NAMESPACE: &str = "CRAC_USER_NAMESPACE";
/// The process's orders to its dump helper; its presence makes the executable one.
pub(crate) const DUMP_HELPER: &str = "CRAC_DUMP_HELPER";
/// What the dump helper found for the manifest, passed to CRIU's action script.
pub(crate) const DUMP_IDENTITY: &str = "CRAC_DUMP_IDENTITY";
/// The restorer's PID, for the `__wait` CRIU becomes.
pub(crate) const RESTORER: &str = "CRAC_RESTORER";
/// The fd `crac __init` reports how the application ended on.
pub(crate) const INIT_REPORT_FD: &str = "CRAC_INIT_REPORT_FD";
/// `1`: the application keeps the restore-only capabilities at most.
pub(crate) const DROP_CAPABILITIES: &str = "CRAC_DROP_CAPABILITIES";
/// The image being restored, for the restore's action script.
pub(crate) const RESTORE_IMAGE: &str = "CRAC_RESTORE_IMAGE";
/// Where the restore's action script finds the page check's verdict.
pub(crate) const RESTORE_VERDICT: &str = "CRAC_RESTORE_VERDICT";
/// The file the restore's action script stamps its phases into.
pub(crate) const RESTORE_PHASES: &str = "CRAC_RESTORE_PHASES";
/// When the restore began, in nanoseconds since the Unix epoch.
pub(crate) const RESTORE_BEGAN: &str = "CRAC_RESTORE_BEGAN";
/// `#[crac::test]`: set for the checkpointed process, the name of the test it runs.
pub(crate) const TEST_CHECKPOINT: &str = "CRAC_TEST_CHECKPOINT";
/// `#[crac::test]`: given to each copy at restore, the file its value goes to.
pub(crate) const TEST_REPORT: &str = "CRAC_TEST_REPORT";
/// `#[crac::test]`: where the `crac` command is looked for first.
pub(crate) const CLI: &str = "CRAC_CLI";

/// One environment variable: its name, the process that reads it, what it means, and
/// what holds when it is unset (`set by crac` for those crac's processes pass on).
#[derive(Debug)]
pub(crate) struct Variable {
    pub(crate) name: &'static str,
    pub(crate) read_by: &'static str,
    pub(crate) meaning: &'static str,
    pub(crate) default: &'static str,
}

const fn var(
    name: &'static str,
    read_by: &'static str,
    meaning: &'static str,
    default: &'static str,
) -> Variable {
    Variable {
        name,
        read_by,
        meaning,
        default,
    }
}

/// What the `default` column says of a variable crac's own processes pass each other.
const INTERNAL: &str = "set by crac";

/// Every `CRAC_*` variable: the settings first, then what crac sets for its own
/// processes, then the install script's. Markdown in the text: it is the guide's table.
pub(crate) const VARIABLES: &[Variable] = &[
    var(
        CHECKPOINT_TO,
        "the application; `crac checkpoint` (in the process's environment); `crac::MappedHeap`, at the first allocation",
        "the image directory a checkpoint writes (like `-XX:CRaCCheckpointTo`); relative to the process's working directory. With `crac::MappedHeap`, its presence puts the heap in segment files of `<image directory>.heap`",
        "required",
    ),
    var(
        ENGINE,
        "the application (crac-core)",
        "the engine that takes the image: `criu`, or `simulate` (runs the hooks, takes no image)",
        "the compiled-in engine with the highest priority: `criu`",
    ),
    var(
        HOOK_DEADLINE,
        "the application (crac-core)",
        "a deadline for every hook that has none of its own, as `500ms`, `2s` or `1m`",
        "none: hooks without a deadline run inline",
    ),
    var(
        CRIU,
        "the application; `crac`; `#[crac::test]` (also when it is compiled)",
        "the `criu` binary",
        "`criu` on `PATH`, then `/usr/local/sbin`, `/usr/sbin`",
    ),
    var(
        IMAGE_KEY,
        "the application (its dump's action script); `crac`",
        "the file of the key every image is sealed with at checkpoint and checked with at restore (`crac key`); an image that travels needs the same key on both hosts",
        "root: `/var/lib/crac/image.key`; another user: `$XDG_STATE_HOME/crac/image.key` or `~/.local/state/crac/image.key`; made on first use",
    ),
    var(
        IMAGE_CACHE,
        "`crac restore FILE`",
        "the directory a packed image given to `crac restore` is unpacked into, once per host, in a subdirectory named by its digest (mode 0700, refused if anyone else can write it)",
        "root: `/var/cache/crac/images`; another user: `$XDG_CACHE_HOME/crac/images` or `~/.cache/crac/images`",
    ),
    var(
        IMAGE_CACHE_BYTES,
        "`crac restore FILE`",
        "the most bytes of unpacked images the image cache keeps: after an unpack, the images restored least recently are removed until the rest fit, but never one a running restore uses (heap segments, placed at their recorded paths, stay)",
        "`16000000000` (16 GB)",
    ),
    var(
        PACK_IDENTITY,
        "`crac unpack`, `crac restore FILE`, `crac inspect FILE`, `crac doctor FILE`",
        "an age identity file (`AGE-SECRET-KEY-1…` lines, as `age-keygen` writes) that decrypts packed images encrypted with `crac pack --encrypt-to` (`crac inspect` and `crac doctor`: their head only); `--identity` overrides it",
        "none: an encrypted packed image is refused",
    ),
    var(
        MAPPED_HEAP,
        "the application (`crac::MappedHeap`, at its first allocation)",
        "`off`: the heap is the system allocator's even in a process started for a checkpoint, and its images copy it as usual; `on`: it lives in segment files beside the image (`IMAGE.heap`), which images map",
        "`on`",
    ),
    var(
        CRIU_OPTS,
        "the application",
        "extra CRIU options for the dump, space separated; those a restore needs are recorded and repeated",
        "none",
    ),
    var(
        LEAVE_RUNNING,
        "the application",
        "`1`: the process keeps running after its image is taken",
        "`0`",
    ),
    var(
        FD_POLICY,
        "the application",
        "what the open-resource check does with fds no resource claimed: comma-separated `SELECTOR=ACTION` rules (`kind:tcp-listen=ignore`, `path:/var/log/*=close`, `default=error`)",
        "`error` for every fd not wholly inside the process (epoll, eventfd, timerfd, signalfd, inotify, in-process socketpairs and pipes pass)",
    ),
    var(
        LOG,
        "the application",
        "CRIU's log verbosity for the dump, 0 to 4",
        "`2`",
    ),
    var(
        SECRET_ENV,
        "the application",
        "secret environment variables, comma separated: wiped before the dump, given again at restore",
        "none",
    ),
    var(
        MANAGED,
        "the application",
        "set by `crac run` for the process it starts (and so in every restored copy): a direct `checkpoint_restore()` is refused",
        INTERNAL,
    ),
    var(
        ON_READY,
        "the application",
        "`1`, set by `crac run` when it starts the process to take its image: `crac::ready()` checkpoints",
        INTERNAL,
    ),
    var(
        INTERVAL,
        "the application",
        "seconds between checkpoints at `crac::at_consistent_point()`; set by `crac run --every` (and given to every copy it restores); a copy restored by `crac restore` ignores the value it inherited and uses only one given with `--env`",
        "none: no periodic checkpoints",
    ),
    var(
        INSECURE_IMAGE_PERMISSIONS,
        "`crac restore`, `crac run`, `crac inspect`",
        "`1`: restore an image even if a user other than root and the one restoring owns or can write it, a file in it, or a directory above it (as `--insecure-image-permissions`); a warning names what is wrong",
        "`0`: such an image is refused, naming the path, its owner and mode",
    ),
    var(
        PID_NAMESPACE,
        "the application",
        "`private`, set by `crac __init`: the process runs as PID 2 of its own PID namespace",
        INTERNAL,
    ),
    var(
        USER_NAMESPACE,
        "the application; CRIU's action scripts",
        "`rootless`, set by `crac` for what it starts in the user namespace of rootless mode (not root): there, the owners that namespace does not map are taken as root, the paths having been checked outside",
        INTERNAL,
    ),
    var(
        DUMP_HELPER,
        "the dump helper (the application's executable, run again)",
        "the process's orders to its dump helper; its presence makes the executable the helper",
        INTERNAL,
    ),
    var(
        DUMP_IDENTITY,
        "CRIU's action script at dump",
        "the executable's digest and identity and CRIU's version, found by the dump helper for the manifest",
        INTERNAL,
    ),
    var(
        RESTORER,
        "`crac __wait`",
        "the PID of the `crac restore` that started the restore",
        INTERNAL,
    ),
    var(
        INIT_REPORT_FD,
        "`crac __init`",
        "the fd `crac __init` reports how the application ended on",
        INTERNAL,
    ),
    var(
        DROP_CAPABILITIES,
        "the application (before `main`)",
        "`1`, set by `crac run --drop-capabilities`: the application keeps CHECKPOINT_RESTORE, SETUID, SETGID and SETPCAP at most of its capabilities, so that a restore-only container can restore its image",
        INTERNAL,
    ),
    var(
        RESTORE_IMAGE,
        "CRIU's action script at restore",
        "the image being restored",
        INTERNAL,
    ),
    var(
        RESTORE_VERDICT,
        "CRIU's action script at restore",
        "the file holding the page check's verdict",
        INTERNAL,
    ),
    var(
        RESTORE_PHASES,
        "CRIU's action script at restore",
        "the file the restore's phases are stamped into",
        INTERNAL,
    ),
    var(
        RESTORE_BEGAN,
        "CRIU's action script at restore",
        "when the restore began, in nanoseconds since the Unix epoch",
        INTERNAL,
    ),
    var(
        TEST_CHECKPOINT,
        "`#[crac::test]`",
        "the test the checkpointed process runs",
        INTERNAL,
    ),
    var(
        TEST_REPORT,
        "`#[crac::test]`",
        "the file a restored copy writes its value to",
        INTERNAL,
    ),
    var(
        CLI,
        "`#[crac::test]`",
        "the `crac` command",
        "`crac` beside the test executable, then on `PATH`",
    ),
    var(
        "CRAC_CRIU_CACHE",
        "`scripts/install-criu.sh`",
        "where CRIU's source and build tree are kept, so that a rebuild downloads nothing",
        "`/var/cache/crac-criu-build`",
    ),
    var(
        "CRAC_CRIU_SUITES",
        "`scripts/install-criu.sh`",
        "the Debian suites to take CRIU's source package from",
        "`sid trixie`",
    ),
    var(
        "CRAC_DEBIAN_MIRROR",
        "`scripts/install-criu.sh`",
        "the Debian archive to download from",
        "the one in apt's sources",
    ),
];

/// The variables a user sets (those crac sets for its own processes left out), as
/// `crac --help` lists them.
pub fn environment_help() -> String {
    let mut help = String::from("Environment variables:\n");
    for v in VARIABLES.iter().filter(|v| v.default != INTERNAL) {
        let line = format!(
            "  {}\n          {}\n          read by {}; default: {}\n",
            v.name, v.meaning, v.read_by, v.default
        );
        help.push_str(&line.replace('`', ""));
    }
    help
}

/// Whether this process was launched by `crac __init`.
pub(crate) fn in_private_pid_namespace() -> bool {
    std::env::var(PID_NAMESPACE).as_deref() == Ok("private")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`VARIABLES`] as the guide's markdown table.
    fn markdown_table() -> String {
        let mut table =
            String::from("| variable | read by | meaning | default |\n|---|---|---|---|\n");
        for v in VARIABLES {
            table.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                v.name, v.read_by, v.meaning, v.default
            ));
        }
        table
    }

    #[test]
    fn the_guide_lists_every_variable_as_the_table_does() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let guide = std::fs::read_to_string(path).unwrap();
        let in_guide: String = guide
            .lines()
            .skip_while(|line| !line.starts_with("| variable |"))
            .take_while(|line| line.starts_with('|'))
            .map(|line| format!("{line}\n"))
            .collect();
        let expected = markdown_table();
        assert!(
            in_guide == expected,
            "docs/configuration.md's table differs from crac-criu/src/env.rs's \
             VARIABLES; the table should read:\n\n{expected}"
        );
    }

    /// Every `"CRAC_…"` literal in the crates' sources outside the two tables: only tests'
    /// own variables (`CRAC_TEST_…`, not in the table) may be one. crac-derive is left
    /// out: `option_env!` takes a literal, and it depends on neither crate.
    #[test]
    fn the_crates_name_variables_by_their_constants() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut offending = Vec::new();
        let mut dirs: Vec<std::path::PathBuf> =
            ["crac-core/src", "crac-criu/src", "crac-cli/src", "src"]
                .iter()
                .map(|dir| std::path::Path::new(root).join(dir))
                .collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.ends_with("crac-criu/src/env.rs") || path.ends_with("crac-core/src/env.rs")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for literal in text.split("\"CRAC_").skip(1) {
                    let name: String = literal
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    let name = format!("CRAC_{name}");
                    let fixture =
                        name.starts_with("CRAC_TEST_") && VARIABLES.iter().all(|v| v.name != name);
                    if !fixture {
                        offending.push(format!("{}: {name}", path.display()));
                    }
                }
            }
        }
        assert!(
            offending.is_empty(),
            "name these by their constant in crac-criu/src/env.rs (adding it to \
             VARIABLES and docs/configuration.md if new):\n{}",
            offending.join("\n")
        );
    }

    #[test]
    fn crac_help_lists_the_settings_and_not_what_crac_sets_itself() {
        let help = environment_help();
        for v in VARIABLES {
            let listed = help.contains(&format!("  {}\n", v.name));
            assert_eq!(listed, v.default != INTERNAL, "{}", v.name);
        }
        assert!(!help.contains('`'), "markdown in the terminal:\n{help}");
    }

    #[test]
    fn every_variable_is_listed_once_with_its_prefix() {
        let mut names: Vec<_> = VARIABLES.iter().map(|v| v.name).collect();
        assert!(names.iter().all(|name| name.starts_with("CRAC_")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len(), "a variable is listed twice");
        assert!(
            VARIABLES
                .iter()
                .all(|v| !format!("{}{}{}", v.read_by, v.meaning, v.default).contains('|')),
            "a `|` would split the guide's table"
        );
    }
}

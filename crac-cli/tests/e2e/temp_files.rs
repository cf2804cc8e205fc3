//! What another local user can do through the temp directory while root restores: plant
//! symlinks and files under the names a restore once used, rewrite the page check's
//! verdict, or leave things for the housekeeping to follow or delete; and whether a
//! secret given with `--env NAME` stays in `crac __wait`'s environment. The temp
//! directory is made like /tmp (mode 1777), so the attacker (`attacker.rs`) can plant.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::attacker::{Attacker, attacker};
use crate::harness::{
    KillOnDrop, Run, crac_bin, criu, image_pid, killed_by_sigkill, setup, tests, text, write_script,
};

tests![
    symlinks_planted_for_the_next_pids_are_never_written_through,
    verdicts_another_user_rewrites_cannot_pass_a_damaged_image,
    the_housekeeping_neither_follows_nor_deletes_another_users_files,
    a_secret_given_with_env_is_not_in_the_environment_of_wait,
];

/// How many PIDs after the last one given out the attacker plants for at a time.
const PLANTED: u32 = 600;
/// Planting is done once the next this many PIDs are all planted for: the restorer,
/// started right after, gets one of them, though the host's other processes take PIDs
/// meanwhile.
const AHEAD: u32 = 200;

/// The PIDs planted for.
type Pids = std::collections::BTreeSet<u32>;

/// A number from a file of /proc/sys/kernel.
fn kernel(name: &str) -> u32 {
    std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A test's world: a /tmp-like temp directory, open to the attacker, and a root-owned
/// file beside it that nothing may change.
struct World {
    dir: PathBuf,
    tmp: PathBuf,
    target: PathBuf,
    user: Attacker,
}

const PRECIOUS: &str = "root's own file: nothing may change it\n";

impl World {
    fn new(name: &str) -> (World, PathBuf) {
        let (dir, image) = setup(name);
        let open = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // the attacker must reach the temp directory: every directory above it traversable
        let mut above = dir.parent();
        while let Some(p) = above.filter(|p| p.starts_with(std::env::temp_dir())) {
            open(p, 0o755);
            above = p.parent();
        }
        open(&dir, 0o755);
        let tmp = dir.join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        open(&tmp, 0o1777);
        let target = dir.join("root-owned");
        std::fs::write(&target, PRECIOUS).unwrap();
        open(&target, 0o644);
        let world = World {
            dir,
            tmp,
            target,
            user: attacker(),
        };
        (world, image)
    }

    /// Plants `make(path)`, as the attacker's own, under `crac-restore-PID.KIND` for
    /// each of `kinds` and each of the PIDs the next processes get (the last one given
    /// out, `ns_last_pid`, + 1 on, wrapping at `pid_max` as the kernel does); returns
    /// those PIDs.
    fn plant(&self, kinds: &[&str], make: impl Fn(&Path)) -> Pids {
        let max = kernel("pid_max");
        let next = |last: u32, i: u32| match last + i {
            pid if pid < max => pid,
            pid => 300 + pid - max,
        };
        let mut planted = Pids::new();
        loop {
            let last = kernel("ns_last_pid");
            if (1..=AHEAD).all(|i| planted.contains(&next(last, i))) {
                return planted;
            }
            for pid in (1..=PLANTED).map(|i| next(last, i)) {
                if !planted.insert(pid) {
                    continue;
                }
                for kind in kinds {
                    let path = self.tmp.join(format!("crac-restore-{pid}.{kind}"));
                    // what an earlier round planted under the name goes first
                    let _ = std::fs::remove_file(&path);
                    make(&path);
                    self.user.own(&path);
                }
            }
        }
    }

    /// Plants symlinks to the root-owned file under every name a restore once wrote.
    fn plant_symlinks(&self) -> Pids {
        self.plant(&["verdict", "log", "phases", "lazy", "lazy.log"], |p| {
            std::os::unix::fs::symlink(&self.target, p).unwrap();
        })
    }

    /// `crac restore ARGS` with this world's temp directory, to its end; checks that its
    /// PID was one planted for.
    fn restore(&self, args: &[&str], pids: &Pids) -> Output {
        self.restore_with(args, Some(pids), None)
    }

    /// [`World::restore`] with `criu` as CRIU, if given; its PID checked if `pids`.
    fn restore_with(&self, args: &[&str], pids: Option<&Pids>, criu: Option<&Path>) -> Output {
        let mut cmd = Command::new(crac_bin());
        if let Some(criu) = criu {
            cmd.env("CRAC_CRIU", criu);
        }
        let child = cmd
            .arg("restore")
            .args(args)
            .env("TMPDIR", &self.tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            pids.is_none_or(|pids| pids.contains(&child.id())),
            "the restorer's PID {} is among those planted for ({pids:?})",
            child.id()
        );
        child.wait_with_output().unwrap()
    }

    fn assert_target_unchanged(&self, after: &str) {
        let meta = std::fs::symlink_metadata(&self.target).unwrap();
        assert!(meta.is_file() && meta.uid() == 0, "{after}: {meta:?}");
        assert_eq!(
            std::fs::read_to_string(&self.target).unwrap(),
            PRECIOUS,
            "{after}: root wrote into its own file through the attacker's symlink"
        );
    }
}

/// Inverts 100 KB in the middle of the image's page data, without resealing.
fn damage_pages(image: &Path) {
    let pages = image.join("pages-1.img");
    let mut bytes = std::fs::read(&pages).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + (100 << 10)] {
        *b = !*b;
    }
    std::fs::write(&pages, bytes).unwrap();
}

const DAMAGED: &str = "the image was damaged or changed after the dump: image file pages-1.img \
                       does not match its digest";

/// Attack 2 of issue 18: symlinks to a root-owned file under every name a restore wrote
/// (`/tmp/crac-restore-PID.{verdict,log,...}`), for the PIDs the restorer may get. Root
/// must write through none of them: not in a restore that succeeds, nor one that fails
/// (its CRIU log kept and named), nor a lazy one.
fn symlinks_planted_for_the_next_pids_are_never_written_through() {
    let (world, image) = World::new("temp-symlinks");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let img = image.to_str().unwrap();
    for (args, what) in [
        (vec![img], "a restore"),
        (vec!["--lazy", img], "a lazy restore"),
    ] {
        let pids = world.plant_symlinks();
        let out = world.restore(&args, &pids);
        world.assert_target_unchanged(what);
        assert_eq!(out.status.code(), Some(7), "{what}: {out:?}");
    }
    // a restore CRIU fails (a shell job without a terminal): its log is kept and named
    let failing = world.dir.join("criu");
    write_script(
        &failing,
        &format!(
            "#!/bin/sh\nshift\nexec {} restore --shell-job \"$@\"\n",
            criu().unwrap().display()
        ),
    );
    let pids = world.plant_symlinks();
    let out = world.restore_with(&[img], Some(&pids), Some(&failing));
    world.assert_target_unchanged("a restore CRIU failed");
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    let log = stderr
        .lines()
        .find_map(|l| l.strip_prefix("full CRIU log: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("the log is named: {stderr}"));
    let meta = std::fs::symlink_metadata(&log).unwrap();
    assert!(
        meta.is_file() && meta.uid() == 0,
        "{}: {meta:?}",
        log.display()
    );
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "{}: mode {:o}",
        log.display(),
        meta.mode()
    );
    // a damaged image: the verdict says so, and the copy is refused
    damage_pages(&image);
    let pids = world.plant_symlinks();
    let out = world.restore(&[img], &pids);
    world.assert_target_unchanged("a restore of a damaged image");
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(text(&out.stderr).contains(DAMAGED), "{out:?}");
}

/// Attack 3 of issue 18: files under the verdict's old names, made and kept writable by
/// the attacker, who rewrites the running restorer's to `ok` again and again while root
/// restores a damaged image. The damaged copy must never run, and the refusal names the
/// file.
fn verdicts_another_user_rewrites_cannot_pass_a_damaged_image() {
    let (world, image) = World::new("temp-verdicts");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    damage_pages(&image);
    let pids = world.plant(&["verdict"], |path| {
        std::fs::write(path, "").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
    });
    // the attacker: the verdict of every running `crac` (whose PIDs anyone can see)
    // rewritten to `ok`, again and again
    let mut rewriter = world
        .user
        .command("sh")
        .arg("-c")
        .arg(
            "while :; do for p in $(pgrep -x crac); do f=\"$1/crac-restore-$p.verdict\"; \
             [ -f \"$f\" ] && printf 'ok\\n' > \"$f\"; done; done",
        )
        .arg("sh")
        .arg(&world.tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(rewriter.id());
    let out = world.restore(&[image.to_str().unwrap()], &pids);
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("Restored") && !stdout.contains("after_restore"),
        "the damaged copy ran: {out:?}"
    );
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(text(&out.stderr).contains(DAMAGED), "{out:?}");
    rewriter.kill().unwrap();
    rewriter.wait().unwrap();
}

/// A later restore's housekeeping of the temp directory: what another user planted
/// under names a restore uses (files, directories, symlinks to root's files, for PIDs
/// that are gone) stays as it was, and nothing behind a symlink is touched.
fn the_housekeeping_neither_follows_nor_deletes_another_users_files() {
    let (world, image) = World::new("temp-housekeeping");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    // root's own directory, which a symlink points into
    let victim = world.dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("kept"), PRECIOUS).unwrap();
    // PIDs no process has
    let gone: Vec<u32> = (2..)
        .map(|n| 32_000 - n)
        .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .take(3)
        .collect();
    let mut planted = Vec::new();
    for (i, pid) in gone.iter().enumerate() {
        for name in [
            format!("crac-restore-{pid}.verdict"),
            format!("crac-restore-{pid}.phases"),
            format!("crac-restore-{pid}.log"),
            format!("crac-restore-{pid}.lazy"),
            format!("crac-restore-{pid}.Xq3k9Z"),
        ] {
            let path = world.tmp.join(name);
            match i {
                0 => std::fs::write(&path, "the attacker's\n").unwrap(),
                1 => {
                    std::fs::create_dir(&path).unwrap();
                    std::fs::write(path.join("inside"), "the attacker's\n").unwrap();
                    world.user.own(&path.join("inside"));
                }
                _ => std::os::unix::fs::symlink(&victim, &path).unwrap(),
            }
            world.user.own(&path);
            // old, as a failed restore's log a day later
            let _ = Command::new("touch")
                .args(["-h", "-d", "3 days ago"])
                .arg(&path)
                .status();
            planted.push(path);
        }
    }
    let out = world.restore_with(&[image.to_str().unwrap()], None, None);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    for path in &planted {
        let meta = std::fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{} was deleted: {e}", path.display()));
        assert_eq!(meta.uid(), world.user.uid, "{}", path.display());
        if meta.is_dir() {
            assert!(path.join("inside").exists(), "{}", path.display());
        }
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("kept")).unwrap(),
        PRECIOUS,
        "a file behind a planted symlink"
    );
}

/// A secret given to the copy with `--env NAME` (the restorer's own value) reaches the
/// copy through the restore's memfd only: `crac __wait`, the copy's parent for its
/// whole life, does not carry it in its environment.
fn a_secret_given_with_env_is_not_in_the_environment_of_wait() {
    let (dir, image) = setup("temp-wait-env");
    let first = Run::new("forever", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    let secret = format!("s3cret-{}-{:?}", std::process::id(), Instant::now());
    let out_path = dir.join("copy");
    let mut restorer = Command::new(crac_bin())
        .args([
            "restore",
            "--env",
            "CRAC_E2E_WAIT_SECRET",
            image.to_str().unwrap(),
        ])
        .env("CRAC_E2E_WAIT_SECRET", &secret)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _copy = KillOnDrop(pid as u32);
    let _restorer = KillOnDrop(restorer.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&out_path)
        .unwrap()
        .contains("round 1 outcome Restored")
    {
        assert!(Instant::now() < deadline, "the copy never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let parent: u32 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap();
    assert!(
        text(&cmdline).contains("__wait"),
        "the copy's parent is crac __wait: {}",
        text(&cmdline)
    );
    let environ = std::fs::read(format!("/proc/{parent}/environ")).unwrap();
    assert!(
        !text(&environ).contains(&secret),
        "crac __wait's environment holds the secret: {}",
        text(&environ).replace('\0', " ")
    );
    restorer.kill().unwrap();
    restorer.wait().unwrap();
}

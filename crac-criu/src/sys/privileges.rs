//! What CRIU needs from the process that runs it, beyond being root: capabilities a
//! container runtime may not grant, and no seccomp filter. Measured with podman and
//! CRIU 4.2 (examples/container/README.md): a container dropping every capability
//! checkpoints and restores with exactly these five added and its seccomp filter off.
//! A process missing them is told which, why, and how to grant them.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use crate::env::USER_NAMESPACE;

/// A capability CRIU or `crac` needs, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needed {
    /// Its number (`CAP_*` in linux/capability.h).
    bit: u32,
    /// Its name without `CAP_`, as container runtimes spell it.
    pub(crate) name: &'static str,
    /// What it is used for.
    why: &'static str,
}

const SYS_ADMIN: Needed = Needed {
    bit: 21,
    name: "SYS_ADMIN",
    why: "for the private PID and mount namespaces `unshare` makes, and CRIU's namespace work",
};
const NET_ADMIN: Needed = Needed {
    bit: 12,
    name: "NET_ADMIN",
    why: "to restore sockets' buffer sizes with SO_SNDBUFFORCE",
};
const SYS_TIME: Needed = Needed {
    bit: 25,
    name: "SYS_TIME",
    why: "to set the clock offsets of the restored process's time namespace",
};
const SYS_CHROOT: Needed = Needed {
    bit: 18,
    name: "SYS_CHROOT",
    why: "for CRIU to change root while it restores",
};
const SETPCAP: Needed = Needed {
    bit: 8,
    name: "SETPCAP",
    why: "to restore the process's capability bounding set",
};

/// Starting a private PID namespace (`crac run`'s first start, any restore of an image
/// taken under `crac run`) and dumping the process in it.
pub(crate) const TO_CHECKPOINT: &[Needed] = &[SYS_ADMIN];

/// A CRIU restore.
pub(crate) const TO_RESTORE: &[Needed] = &[SYS_ADMIN, NET_ADMIN, SYS_TIME, SYS_CHROOT, SETPCAP];

/// Those of `needed` this process does not have in its effective set (none when the
/// set cannot be read: CRIU then reports for itself).
pub(crate) fn missing(needed: &[Needed]) -> Vec<Needed> {
    let Some(effective) = status_field("CapEff").and_then(|v| u64::from_str_radix(&v, 16).ok())
    else {
        return Vec::new();
    };
    needed
        .iter()
        .filter(|cap| effective & (1 << cap.bit) == 0)
        // Without time namespaces in the kernel, CRIU makes none.
        .filter(|cap| **cap != SYS_TIME || std::path::Path::new("/proc/self/ns/time").exists())
        .copied()
        .collect()
}

/// Whether this process runs under a seccomp filter (container runtimes install one by
/// default). CRIU cannot checkpoint such a process: it must suspend the filter while it
/// injects its code, and the kernel refuses that to a tracer that is itself filtered,
/// as CRIU, started from inside, always is.
pub(crate) fn under_seccomp_filter() -> bool {
    status_field("Seccomp").as_deref() == Some("2")
}

/// What is missing for `action`, and how to grant it with docker/podman and in a
/// Kubernetes pod spec; `None` when nothing is.
pub(crate) fn problem(action: &str, missing: &[Needed], seccomp: bool) -> Option<String> {
    if missing.is_empty() && !seccomp {
        return None;
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let caps: Vec<String> = missing
            .iter()
            .map(|cap| format!("CAP_{} ({})", cap.name, cap.why))
            .collect();
        let flags: Vec<String> = missing
            .iter()
            .map(|cap| format!("--cap-add {}", cap.name))
            .collect();
        let names: Vec<String> = missing
            .iter()
            .map(|cap| format!("\"{}\"", cap.name))
            .collect();
        parts.push(format!(
            "this process lacks {}: grant {} (docker/podman run {}; Kubernetes: \
             securityContext.capabilities.add: [{}])",
            caps.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            flags.join(" "),
            names.join(", ")
        ));
    }
    if seccomp {
        parts.push(
            "this process runs under a seccomp filter, which CRIU cannot checkpoint (it \
             must suspend the filter, and the kernel refuses that to a filtered tracer): run \
             it without one (docker/podman run --security-opt seccomp=unconfined; \
             Kubernetes: securityContext.seccompProfile.type: Unconfined)"
                .to_string(),
        );
    }
    Some(format!("{action} needs privileges: {}", parts.join("; ")))
}

/// Those of `set` this process does not have in its effective set (none when the set
/// cannot be read).
pub(crate) fn missing_from_effective(set: u64) -> u64 {
    status_field("CapEff")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .map_or(0, |effective| set & !effective)
}

/// CAP_CHECKPOINT_RESTORE's number (Linux 5.9+).
pub(crate) const CHECKPOINT_RESTORE_BIT: u32 = 40;

/// Whether capability `bit` is in this process's bounding set (`false` when the set
/// cannot be read).
pub(crate) fn in_bounding_set(bit: u32) -> bool {
    status_field("CapBnd")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|set| set & (1 << bit) != 0)
}

/// The permitted set of `file`'s file capabilities (`security.capability`), `None`
/// when it has none.
pub(crate) fn file_capabilities(file: &Path) -> std::io::Result<Option<u64>> {
    let path = std::ffi::CString::new(file.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // struct vfs_ns_cap_data: magic_etc, then {permitted, inheritable} for the low and
    // the high 32 capabilities, then (version 3) the root uid.
    let mut data = [0u8; 24];
    // SAFETY: both strings are NUL-terminated; `data` has room for `data.len()` bytes,
    // the size passed.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            data.as_mut_ptr().cast(),
            data.len(),
        )
    };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    let word = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let low = u64::from(word(4));
    // version 1 (12 bytes) has the low 32 capabilities only
    let high = if len >= 20 { u64::from(word(12)) } else { 0 };
    Ok(Some(low | high << 32))
}

/// The capabilities of `set` by name (`CAP_CHECKPOINT_RESTORE`, …; an unnamed one by
/// number).
pub(crate) fn names(set: u64) -> String {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let named: Vec<String> = (0..64)
        .filter(|bit| set & (1 << bit) != 0)
        .map(|bit| match NAMES.get(bit) {
            Some(name) => format!("CAP_{name}"),
            None => format!("capability {bit}"),
        })
        .collect();
    if named.is_empty() {
        "none".into()
    } else {
        named.join(", ")
    }
}

/// Whether this process is root with CAP_CHECKPOINT_RESTORE but without CAP_SYS_ADMIN:
/// a least-privilege container (`--cap-drop ALL --cap-add
/// CHECKPOINT_RESTORE,SETUID,SETGID,SETPCAP`, default seccomp profile), which can restore
/// but not make namespaces nor checkpoint. There CRIU restores `--unprivileged` directly
/// in the container's own PID namespace, where the image's PIDs are free.
pub(crate) fn restore_only() -> bool {
    const SYS_ADMIN_BIT: u32 = SYS_ADMIN.bit;
    nix::unistd::geteuid().is_root()
        && status_field("CapEff")
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .is_some_and(|set| {
                set & (1 << CHECKPOINT_RESTORE_BIT) != 0 && set & (1 << SYS_ADMIN_BIT) == 0
            })
}

/// What a restore-only container can grant a restored process, as a capability set:
/// CHECKPOINT_RESTORE, SETUID, SETGID, SETPCAP.
pub(crate) const RESTORE_ONLY_SET: u64 =
    1 << CHECKPOINT_RESTORE_BIT | 1 << 7 | 1 << 6 | 1 << SETPCAP.bit;

/// Keeps of this process's capabilities only those in `keep` (permitted and effective;
/// none inheritable): CRIU records them in an image and gives a restored copy them back,
/// which a restorer that has fewer cannot do. A program it execs as root gets its
/// bounding set again: the dump helper and CRIU keep what they need.
pub(crate) fn keep_only_capabilities(keep: u64) -> std::io::Result<()> {
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words a set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and `data` are laid out as the kernel's
    // __user_cap_header_struct and two __user_cap_data_struct, which capget fills.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    for (word, data) in data.iter_mut().enumerate() {
        let keep = (keep >> (32 * word)) as u32;
        data.permitted &= keep;
        data.effective &= keep;
        data.inheritable = 0;
    }
    // SAFETY: as above; capset only reads them.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// In a program `crac run --drop-capabilities` started (before `main`): keeps only the
/// capabilities a restore-only container can give back ([`RESTORE_ONLY_SET`]), so that
/// its image restores there. A failure is said, and the program goes on.
pub(crate) fn drop_capabilities_if_asked() {
    if std::env::var(crate::env::DROP_CAPABILITIES).as_deref() == Ok("1")
        && let Err(e) = keep_only_capabilities(RESTORE_ONLY_SET)
    {
        eprintln!("crac: cannot drop this process's capabilities: {e}");
    }
}

/// Whether CRIU restores with `--unprivileged`: without root (rootless mode), or root
/// restricted to restoring ([`restore_only`]).
pub(crate) fn unprivileged_criu() -> bool {
    rootless() || restore_only()
}

/// Whether this process is not root, so that crac goes through a user namespace of its
/// own (rootless mode): PID namespaces made there, CRIU restoring with `--unprivileged`.
pub(crate) fn rootless() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// Inside the user namespace of rootless mode (one uid mapped, this user's, as root;
/// marked by [`USER_NAMESPACE`] by the `crac` that made it), the uid the kernel shows
/// as the owner of every file whose owner the namespace does not map — real root's `/`
/// as much as another user's directory. `crac` checked the paths used there (the
/// image's, the key's directories) outside, where their owners show, before it made
/// the namespace: inside, such an owner is taken as root. `None` anywhere else, where
/// owners are what they seem.
pub(crate) fn unmapped_owner() -> Option<u32> {
    if std::env::var(USER_NAMESPACE).as_deref() != Ok(IN_USER_NAMESPACE) {
        return None;
    }
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    let mut lines = map
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    match (lines.next(), lines.next()) {
        (Some(only), None) if only.first() == Some(&"0") && only.get(2) == Some(&"1") => {
            std::fs::read_to_string("/proc/sys/kernel/overflowuid")
                .ok()?
                .trim()
                .parse()
                .ok()
        }
        _ => None,
    }
}

/// Why rootless mode cannot work here, said for `action` with the remedy, when a sysctl
/// forbids an ordinary user's user namespaces; `None` otherwise (what else may stop it,
/// an AppArmor policy say, `crac doctor` finds by trying).
pub(crate) fn rootless_problem(action: &str) -> Option<String> {
    let sysctl = |path: &str| std::fs::read_to_string(path).ok();
    let forbidden = if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0\n") {
        "user.max_user_namespaces is 0"
    } else if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0\n") {
        "kernel.unprivileged_userns_clone is 0"
    } else {
        return None;
    };
    Some(format!(
        "{action} without root needs a user namespace of its own, and {forbidden} on this \
         host: allow them (as root: sysctl -w user.max_user_namespaces=15000 \
         kernel.unprivileged_userns_clone=1), or run crac as root; `crac doctor` checks"
    ))
}

/// What a failure in rootless mode may come from, and where to look.
pub(crate) const ROOTLESS_ADVICE: &str = "crac runs without root here (rootless mode: a user \
     namespace of its own, `criu restore --unprivileged`), which cannot carry established TCP \
     connections nor an image not taken under `crac run` (it needs its original PID): \
     `crac doctor` says what this host allows";

/// What a failure in a restore-only container may come from.
pub(crate) const RESTORE_ONLY_ADVICE: &str = "crac restores here as root without CAP_SYS_ADMIN \
     (restore-only: CRIU restores `--unprivileged` in the container's PID namespace), which \
     needs CAP_CHECKPOINT_RESTORE, CAP_SETUID, CAP_SETGID and CAP_SETPCAP (docker/podman run \
     --cap-add CHECKPOINT_RESTORE,SETUID,SETGID,SETPCAP), the image's PIDs free (crac as the \
     container's entrypoint, no other process started before it), and cannot carry \
     established TCP connections: `crac doctor` says what this container allows";

/// The smaller alternative to granting what a root restore lacks, for a container.
pub(crate) const RESTORE_ONLY_INSTEAD: &str = "or restore without them in a restore-only \
     container: --cap-drop ALL --cap-add CHECKPOINT_RESTORE,SETUID,SETGID,SETPCAP under the \
     default seccomp profile (rootless podman: --cap-add CHECKPOINT_RESTORE alone), crac as \
     the entrypoint, the image taken by `crac run --drop-capabilities` \
     (examples/container/README.md)";

/// [`USER_NAMESPACE`]'s value.
pub(crate) const IN_USER_NAMESPACE: &str = "rootless";

/// The value of `field` in /proc/self/status.
fn status_field(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problem_names_each_capability_and_how_to_grant_it() {
        let text = problem("a restore", &[NET_ADMIN, SYS_TIME], false).unwrap();
        assert!(text.starts_with("a restore needs privileges: this process lacks CAP_NET_ADMIN ("));
        assert!(text.contains("docker/podman run --cap-add NET_ADMIN --cap-add SYS_TIME"));
        assert!(text.contains("capabilities.add: [\"NET_ADMIN\", \"SYS_TIME\"]"));
        assert!(!text.contains("seccomp"));
        let text = problem("a checkpoint", &[], true).unwrap();
        assert!(text.contains("--security-opt seccomp=unconfined"));
        assert!(text.contains("seccompProfile.type: Unconfined"));
        assert_eq!(problem("a restore", &[], false), None);
    }

    #[test]
    fn this_process_status_is_read() {
        // The test runner as root on a host has every capability; elsewhere at least
        // the field parses (a process without the field would report nothing missing).
        assert!(status_field("CapEff").is_some());
        assert!(status_field("Seccomp").is_some());
    }
}

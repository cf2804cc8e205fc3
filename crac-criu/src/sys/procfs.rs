//! Small readings of `/proc`.

/// The numeric entries of a `/proc` directory (fds, tasks), sorted.
pub(crate) fn numbered(dir: &str) -> Vec<i32> {
    let mut numbers: Vec<i32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// Running or stopped; a zombie (exited, not yet reaped) counts as gone.
pub(crate) fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            Some(
                stat.rsplit_once(')')?
                    .1
                    .trim_start()
                    .starts_with(['Z', 'X']),
            )
        })
        .is_some_and(|dead| !dead)
}

/// Whether `path` (absolute, without symlinks) is where something is mounted, by
/// `/proc/self/mountinfo` (a bind mount on the same filesystem included).
pub(crate) fn is_mount_point(path: &std::path::Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| std::path::Path::new(&unescape(mount_point)) == path)
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first child of `pid`, waiting up to 5 s for it to appear.
pub(crate) fn first_child(pid: libc::pid_t) -> Option<libc::pid_t> {
    let children = format!("/proc/{pid}/task/{pid}/children");
    for _ in 0..2500 {
        let found = std::fs::read_to_string(&children)
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok());
        if found.is_some() {
            return found;
        }
        if !alive(pid) {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    None
}

/// Where the kernel put this process's initial environment, the NUL-separated
/// `NAME=value` strings `/proc/self/environ` reads: fields 50 and 51 of `/proc/self/stat`.
pub(crate) fn env_block() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name (which may hold spaces) start at field 3
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((fields.get(47)?.parse().ok()?, fields.get(48)?.parse().ok()?))
}

/// Whether the `len` bytes at `addr` lie in one writable mapping of this process.
pub(crate) fn writable(addr: usize, len: usize) -> bool {
    addr.checked_add(len).is_some_and(|end| {
        mappings().any(|(start, stop, writable)| writable && start <= addr && end <= stop)
    })
}

/// The writable mapping of this process that holds `addr`: its start and end.
pub(crate) fn mapping_of(addr: usize) -> Option<(usize, usize)> {
    mappings()
        .find(|&(start, end, writable)| writable && start <= addr && addr < end)
        .map(|(start, end, _)| (start, end))
}

/// This process's mappings: start, end, and whether they are writable.
fn mappings() -> impl Iterator<Item = (usize, usize, bool)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let parsed: Vec<(usize, usize, bool)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (start, end) = fields.next()?.split_once('-')?;
            let writable = fields.next()?.get(1..2) == Some("w");
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
                writable,
            ))
        })
        .collect();
    parsed.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_found_and_their_escapes_undone() {
        assert!(is_mount_point(std::path::Path::new("/")));
        assert!(is_mount_point(std::path::Path::new("/proc")));
        assert!(!is_mount_point(std::path::Path::new("/proc/self")));
        assert_eq!(unescape("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
    }

    #[test]
    fn the_initial_environment_block_is_what_proc_shows_and_is_writable() {
        let (start, end) = env_block().unwrap();
        let shown = std::fs::read("/proc/self/environ").unwrap();
        assert_eq!(end - start, shown.len());
        assert!(writable(start, end - start));
        assert!(!writable(start, usize::MAX));
        assert!(!writable(0, 1));
    }
}

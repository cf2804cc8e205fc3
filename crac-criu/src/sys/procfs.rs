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

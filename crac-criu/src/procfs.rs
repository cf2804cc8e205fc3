//! Small readings of `/proc`.

/// The numeric entries of a `/proc` directory (fds, tasks), sorted.
pub fn numbered(dir: &str) -> Vec<i32> {
    let mut numbers: Vec<i32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// Running or stopped; a zombie (exited, not yet reaped) counts as gone.
pub fn alive(pid: libc::pid_t) -> bool {
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

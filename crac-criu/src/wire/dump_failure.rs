//! Why a dump failed, as the helper tells the process: packed into the payload of its
//! `DumpFailed` signal, so that the reason arrives even when no log could be kept.

/// How CRIU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CriuEnd {
    /// CRIU did not run, or the helper failed before it could: the log says why.
    NotRun,
    /// It exited with this status.
    Exited(u8),
    /// It was killed by this signal.
    Killed(u8),
}

impl CriuEnd {
    /// How the process that ran CRIU ended.
    pub(crate) fn of(status: std::process::ExitStatus) -> CriuEnd {
        use std::os::unix::process::ExitStatusExt as _;
        match (status.code(), status.signal()) {
            (Some(code), _) => CriuEnd::Exited(code as u8),
            (None, Some(signal)) => CriuEnd::Killed(signal as u8),
            (None, None) => CriuEnd::NotRun,
        }
    }
}

/// A failed dump, as the helper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DumpFailure {
    /// How CRIU ended.
    pub(crate) criu: CriuEnd,
    /// CRIU failed after its post-dump step had published the new image, which was then
    /// taken back: the image directory is as it was before the dump.
    pub(crate) withdrawn: bool,
}

const EXITED: u32 = 1 << 8;
const KILLED: u32 = 2 << 8;
const KIND: u32 = 3 << 8;
const WITHDRAWN: u32 = 1 << 10;

impl DumpFailure {
    /// The failure as a signal payload.
    pub(crate) fn to_payload(self) -> u32 {
        let end = match self.criu {
            CriuEnd::NotRun => 0,
            CriuEnd::Exited(code) => EXITED | u32::from(code),
            CriuEnd::Killed(signal) => KILLED | u32::from(signal),
        };
        end | if self.withdrawn { WITHDRAWN } else { 0 }
    }

    /// The failure a payload describes.
    pub(crate) fn from_payload(payload: u32) -> DumpFailure {
        let number = payload as u8;
        DumpFailure {
            criu: match payload & KIND {
                EXITED => CriuEnd::Exited(number),
                KILLED => CriuEnd::Killed(number),
                _ => CriuEnd::NotRun,
            },
            withdrawn: payload & WITHDRAWN != 0,
        }
    }

    /// Whether CRIU's log explains the failure: CRIU ran to its end and reported it
    /// (a killed CRIU's last lines are only what it was doing when the signal came).
    pub(crate) fn log_explains(self) -> bool {
        matches!(self.criu, CriuEnd::NotRun | CriuEnd::Exited(1..))
    }

    /// One line saying how CRIU ended, unless only the log can say.
    pub(crate) fn describe(self) -> Option<String> {
        let end = match self.criu {
            CriuEnd::NotRun => return None,
            CriuEnd::Exited(0) => "criu exited with status 0 without running the post-dump step \
                                   that publishes the image"
                .to_string(),
            CriuEnd::Exited(code) => format!("criu exited with status {code}"),
            CriuEnd::Killed(signal) => {
                let name = nix::sys::signal::Signal::try_from(i32::from(signal))
                    .map_or("an unknown signal", |s| s.as_str());
                format!("criu was killed by signal {signal} ({name})")
            }
        };
        Some(if self.withdrawn {
            format!(
                "{end} after the image was written; the new image was discarded and the \
                 previous one, if any, kept"
            )
        } else {
            end
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_survives_the_payload() {
        for criu in [
            CriuEnd::NotRun,
            CriuEnd::Exited(0),
            CriuEnd::Exited(255),
            CriuEnd::Killed(9),
        ] {
            for withdrawn in [false, true] {
                let failure = DumpFailure { criu, withdrawn };
                assert_eq!(DumpFailure::from_payload(failure.to_payload()), failure);
            }
        }
    }

    #[test]
    fn a_killed_criu_is_named_with_its_signal() {
        let killed = DumpFailure {
            criu: CriuEnd::Killed(9),
            withdrawn: false,
        };
        assert_eq!(
            killed.describe().unwrap(),
            "criu was killed by signal 9 (SIGKILL)"
        );
        assert!(!killed.log_explains());
        let late = DumpFailure {
            criu: CriuEnd::Exited(1),
            withdrawn: true,
        };
        assert!(late.describe().unwrap().starts_with(
            "criu exited with status 1 after the image was written; the new image was discarded"
        ));
        assert!(late.log_explains());
    }
}

//! The deadline grammar: a whole, non-zero number of milliseconds (`500ms`), seconds
//! (`2s`) or minutes (`1m`). The derive macros check `deadline = "..."` with it at compile
//! time; crac-core reads `CRAC_HOOK_DEADLINE` with it at run time.

use std::fmt;

/// Why a text is not a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not a whole number followed by `ms`, `s` or `m` (or too large to count).
    NotADeadline,
    /// Well-formed, but zero.
    Zero,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::NotADeadline => {
                "expected a whole number followed by `ms`, `s` or `m`, as in `500ms`, `2s` or `1m`"
            }
            Malformed::Zero => "a deadline must be longer than zero",
        })
    }
}

impl std::error::Error for Malformed {}

/// The deadline `text` writes, in milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, Malformed> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(Malformed::NotADeadline),
    };
    match number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
    {
        Some(0) => Err(Malformed::Zero),
        Some(millis) => Ok(millis),
        None => Err(Malformed::NotADeadline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_units() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("2s"), Ok(2_000));
        assert_eq!(parse_millis("1m"), Ok(60_000));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "2 parsecs",
            "2",
            "s",
            "1.5s",
            " 2s",
            "2S",
            "-1s",
            "",
            "99999999999999999999m",
        ] {
            assert_eq!(parse_millis(bad), Err(Malformed::NotADeadline), "{bad:?}");
        }
        assert_eq!(parse_millis("0ms"), Err(Malformed::Zero));
    }
}

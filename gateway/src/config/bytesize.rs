//! Byte sizes: `"64MiB"`, `"512KiB"`, `"10MB"`, `"512B"`, `"1024"` or a TOML integer.

/// Units, longest suffix first so that `MiB` is not read as `B`.
const UNITS: [(&str, u64); 9] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("B", 1),
];

/// Why a string is not a byte size; the caller quotes the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ByteSizeError {
    #[error(
        "expected an integer with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. `64MiB`"
    )]
    Invalid,
    #[error("too large")]
    Overflow,
}

/// Parses a whole number of bytes with an optional unit; units are case-insensitive and may
/// be separated from the number by spaces. Fractions are not accepted.
pub(crate) fn parse(text: &str) -> Result<u64, ByteSizeError> {
    let invalid = || ByteSizeError::Invalid;
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(invalid());
    }
    let unit = unit.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, multiplier)| multiplier)
            .ok_or_else(invalid)?
    };
    let overflow = || ByteSizeError::Overflow;
    number
        .parse::<u64>()
        .map_err(|_| overflow())?
        .checked_mul(multiplier)
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        let cases = [
            ("512", 512),
            ("512B", 512),
            ("64KiB", 64 * 1024),
            ("1MiB", 1024 * 1024),
            ("64MiB", 64 * 1024 * 1024),
            ("2GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("10KB", 10_000),
            ("10MB", 10_000_000),
            ("3GB", 3_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("64 MiB", 64 << 20),
            ("1mib", 1 << 20),
            ("0", 0),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_garbage_and_names_it() {
        for text in [
            "", "MiB", "1.5MiB", "-1", "10 M", "10Mb/s", "ten", "1 KiB 2",
        ] {
            assert_eq!(parse(text), Err(ByteSizeError::Invalid), "{text}");
        }
        let message = parse("12XB").unwrap_err().to_string();
        assert!(
            message.contains("KiB") && message.contains("e.g. `64MiB`"),
            "{message}"
        );
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(parse("99999999999TiB"), Err(ByteSizeError::Overflow));
        assert!(parse("99999999999999999999999").is_err());
    }
}

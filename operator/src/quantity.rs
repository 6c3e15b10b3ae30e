//! Kubernetes resource quantities (`10Gi`, `500M`, `1.5Ti`) as byte counts.

use crate::{Error, Result};

/// Bytes in `value`, a quantity with a binary (`Ki`..`Ei`) or decimal (`k`..`E`)
/// suffix or none. `field` names the spec field in the error.
pub fn bytes(field: &str, value: &str) -> Result<u64> {
    let invalid = || {
        Error::InvalidSpec(format!(
            "{field} {value:?} is not a size such as 10Gi or 500M"
        ))
    };
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return Err(invalid()),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(invalid());
    }
    let n: f64 = number.parse().map_err(|_| invalid())?;
    let total = n * multiplier as f64;
    if total <= 0.0 || total >= u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("f", "10Gi").unwrap(), 10 << 30);
        assert_eq!(bytes("f", "500M").unwrap(), 500_000_000);
        assert_eq!(bytes("f", "1.5Ki").unwrap(), 1536);
        assert_eq!(bytes("f", "4096").unwrap(), 4096);
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for bad in ["", "-1Gi", "0", "10GB", "Gi", "1e3", "ten"] {
            let err = bytes("pgduck.cacheSize", bad).unwrap_err().to_string();
            assert!(err.contains("pgduck.cacheSize"), "{bad}: {err}");
        }
    }
}

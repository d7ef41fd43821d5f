//! Resource quantities (`500m`, `1Gi`, `2e3`): parsed to compare them, tell their sign
//! (validation), and turn them into the whole units or millis cgroups and env vars need. Values are held exactly in nano-units, the finest
//! precision Kubernetes keeps, so `0.1` and `100m` compare equal.

use std::cmp::Ordering;

/// A parsed quantity in nano-units; saturates far beyond any real resource size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

impl Quantity {
    /// Parses Kubernetes' quantity syntax: a signed decimal number and an optional binary
    /// (`Ki`…`Ei`), decimal (`n`, `u`, `m`, `k`, `M`…`E`) or exponent (`e3`) suffix.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        // digits × 10^(exp10) × 2^(exp2), with the fraction folded into the digits.
        let mut digits: i128 = 0;
        for c in whole.bytes().chain(fraction.bytes()) {
            digits = digits
                .saturating_mul(10)
                .saturating_add(i128::from(c - b'0'));
        }
        let mut exp10: i32 = -(fraction.len() as i32);
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            _ => {
                let exponent = suffix.strip_prefix(['e', 'E'])?;
                exp10 += exponent.parse::<i32>().ok()?;
            }
        }
        let mut nanos = digits.saturating_mul(1 << exp2);
        let scale = exp10 + 9;
        if scale >= 0 {
            for _ in 0..scale.min(40) {
                nanos = nanos.saturating_mul(10);
            }
        } else {
            // Kubernetes rounds sub-nano precision up.
            let divisor = 10i128
                .checked_pow(scale.unsigned_abs())
                .unwrap_or(i128::MAX);
            nanos = nanos / divisor + i128::from(nanos % divisor != 0);
        }
        Some(Quantity(if negative { -nanos } else { nanos }))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Is this a whole number of units (no milli part)?
    pub fn is_integer(self) -> bool {
        self.0 % 1_000_000_000 == 0
    }

    pub fn compare(self, other: Quantity) -> Ordering {
        self.0.cmp(&other.0)
    }

    /// The exact value in nano-units (10⁻⁹).
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// The value in thousandths, rounded up (CPU `250m` → 250, `1` → 1000).
    pub fn milli_ceil(self) -> u64 {
        div_ceil(self.0, 1_000_000).max(0) as u64
    }

    /// The value in whole units, rounded up (`1Gi` → 1073741824, `1500m` → 2).
    pub fn ceil(self) -> u64 {
        div_ceil(self.0, 1_000_000_000).max(0) as u64
    }

    /// The value divided by `divisor`, rounded up, as the downward API reports
    /// resources (`limits.memory` with divisor `1Mi`).
    pub fn ceil_in(self, divisor: Quantity) -> u64 {
        if divisor.0 <= 0 {
            return 0;
        }
        div_ceil(self.0, divisor.0).max(0) as u64
    }
}

fn div_ceil(value: i128, divisor: i128) -> i128 {
    value / divisor + i128::from(value % divisor > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_across_suffixes() {
        let q = |s| Quantity::parse(s).unwrap();
        let cases = [
            ("100m", "0.1", Ordering::Equal),
            ("1Gi", "1073741824", Ordering::Equal),
            ("1G", "1Gi", Ordering::Less),
            ("2", "1500m", Ordering::Greater),
            ("1e3", "1k", Ordering::Equal),
            ("128Mi", "256Mi", Ordering::Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(q(a).compare(q(b)), want, "{a} vs {b}");
        }
        assert!(q("-1").is_negative());
        assert!(q("2").is_integer());
        assert!(!q("1500m").is_integer());
        assert_eq!(Quantity::parse("abc"), None);
        assert_eq!(Quantity::parse("1Xi"), None);
        assert_eq!(q("250m").milli_ceil(), 250);
        assert_eq!(q("1").milli_ceil(), 1000);
        assert_eq!(q("1500m").ceil(), 2);
        assert_eq!(q("1Gi").ceil(), 1 << 30);
        assert_eq!(q("1Gi").ceil_in(q("1Mi")), 1024);
        assert_eq!(q("1").ceil_in(q("1m")), 1000);
    }
}

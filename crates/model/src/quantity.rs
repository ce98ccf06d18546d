//! Kubernetes resource quantities (`500m`, `1Gi`, `1e3`), parsed exactly and compared by value.

use std::cmp::Ordering;

/// A resource quantity, exactly: `mantissa * 2^pow2 * 10^pow10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    pow2: u32,
    pow10: i32,
}

impl Quantity {
    /// Parses a Kubernetes quantity: a decimal number, then an optional binary suffix
    /// (`Ki` .. `Ei`), decimal suffix (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`) or exponent
    /// (`e3`, `E-2`).
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return None;
        }
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        if negative {
            mantissa = -mantissa;
        }
        let mut pow10 = -(frac_part.len() as i32);
        let mut pow2 = 0;
        match suffix {
            "" => {}
            "Ki" => pow2 = 10,
            "Mi" => pow2 = 20,
            "Gi" => pow2 = 30,
            "Ti" => pow2 = 40,
            "Pi" => pow2 = 50,
            "Ei" => pow2 = 60,
            "n" => pow10 -= 9,
            "u" => pow10 -= 6,
            "m" => pow10 -= 3,
            "k" => pow10 += 3,
            "M" => pow10 += 6,
            "G" => pow10 += 9,
            "T" => pow10 += 12,
            "P" => pow10 += 15,
            "E" => pow10 += 18,
            exp => {
                let e = exp.strip_prefix(['e', 'E'])?;
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || digits.len() > 4
                {
                    return None;
                }
                pow10 += e.parse::<i32>().ok()?;
            }
        }
        Some(Quantity {
            mantissa,
            pow2,
            pow10,
        })
    }

    /// Compares two quantities exactly; `None` if the numbers are too large to compare.
    pub fn compare(&self, other: &Quantity) -> Option<Ordering> {
        let scale = |q: &Quantity, pow2: u32, pow10: i32| -> Option<i128> {
            let m = q.mantissa.checked_mul(1i128.checked_shl(q.pow2 - pow2)?)?;
            let shift = u32::try_from(q.pow10 - pow10).ok()?;
            m.checked_mul(10i128.checked_pow(shift)?)
        };
        if self.mantissa == 0 || other.mantissa == 0 {
            return Some(self.mantissa.signum().cmp(&other.mantissa.signum()));
        }
        let pow2 = self.pow2.min(other.pow2);
        let pow10 = self.pow10.min(other.pow10);
        Some(scale(self, pow2, pow10)?.cmp(&scale(other, pow2, pow10)?))
    }
}

/// Whether two quantity strings denote the same amount (`500m` and `0.5`, `1Gi` and `1024Mi`).
/// Strings that are not quantities are equal only when identical.
pub fn quantities_equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (Quantity::parse(a), Quantity::parse(b)) {
        (Some(x), Some(y)) => x.compare(&y) == Some(Ordering::Equal),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_table() {
        let check_q =
            |a: &str, b: &str, equal: bool| assert_eq!(quantities_equal(a, b), equal, "{a} vs {b}");
        check_q("500m", "0.5", true);
        check_q("1Gi", "1024Mi", true);
        check_q("1Ki", "1024", true);
        check_q("1k", "1000", true);
        check_q("1e3", "1k", true);
        check_q("1E3", "1000", true);
        check_q("1E", "1000000000000000000", true);
        check_q("0.1", "100m", true);
        check_q(".5", "500m", true);
        check_q("100u", "0.1m", true);
        check_q("1n", "0.000000001", true);
        check_q("1.5Gi", "1536Mi", true);
        check_q("0", "0m", true);
        check_q("-1", "-1000m", true);
        check_q("1Gi", "1G", false);
        check_q("1", "2", false);
        check_q("abc", "abc", true);
        check_q("abc", "abd", false);
        check_q("1x", "1", false);
        check_q("1.2.3", "1", false);
        check_q("", "0", false);
        check_q("8Ei", "9223372036854775808", true);
        assert_eq!(
            Quantity::parse("2Mi")
                .unwrap()
                .compare(&Quantity::parse("2M").unwrap()),
            Some(Ordering::Greater)
        );
    }
}

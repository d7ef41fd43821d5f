//! `IntOrString` fields (maxSurge, maxUnavailable, minAvailable) resolved against a total.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Kubernetes' `GetScaledValueFromIntOrPercent`: an integer as is, or `N%` of `total` rounded
/// up or down. The error is Kubernetes' wording for a malformed percentage.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .and_then(|digits| digits.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {text:?}"))?;
            let product = percent * i64::from(total);
            let scaled = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_asked_and_malformed_ones_are_errors() {
        let percent = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&IntOrString::Int(3), 10, true), Ok(3));
        assert_eq!(scaled_value(&percent("25%"), 10, true), Ok(3));
        assert_eq!(scaled_value(&percent("25%"), 10, false), Ok(2));
        assert_eq!(
            scaled_value(&percent("x%"), 10, true),
            Err("invalid value for IntOrString: invalid value \"x%\"".into())
        );
    }
}

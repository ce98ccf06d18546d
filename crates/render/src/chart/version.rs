//! Chart version constraints as Helm reads them (Masterminds semver): an exact version (`4.11.3`,
//! `v4.11.3`) or a range (`>=4.0.0 <5.0.0`, `^4.11`, `~4.11.0`, `4.11.x`, `1.2 - 1.4`, `a || b`),
//! and the choice of the newest version that satisfies one.

use semver::{Version, VersionReq};

/// A parsed `version` field of a chart reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// One version, compared by semantic version (`v1.2.3` equals `1.2.3`).
    Exact(Version),
    /// Alternatives (`||`), each a set of comparators that must all hold.
    Range(Vec<VersionReq>),
}

/// A version as chart repositories write them: semver, with an optional leading `v`.
pub fn parse_version(s: &str) -> Option<Version> {
    Version::parse(s.trim().trim_start_matches('v')).ok()
}

impl Constraint {
    /// Parses an exact version or a range; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Constraint, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(
                "the chart version is empty (give a version or a range such as \">=1.0.0 <2.0.0\")"
                    .into(),
            );
        }
        if let Some(v) = parse_version(s) {
            return Ok(Constraint::Exact(v));
        }
        s.split("||")
            .map(|alternative| parse_alternative(alternative.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Constraint::Range)
            .map_err(|e| format!("chart version `{s}` is neither a version nor a range: {e}"))
    }

    /// Whether `v` satisfies the constraint.
    pub fn matches(&self, v: &Version) -> bool {
        match self {
            Constraint::Exact(want) => want == v,
            Constraint::Range(alternatives) => alternatives.iter().any(|r| r.matches(v)),
        }
    }

    /// The newest of `versions` that satisfies the constraint (unparseable ones are skipped).
    pub fn select<'a>(&self, versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        versions
            .into_iter()
            .filter_map(|s| parse_version(s).map(|v| (v, s)))
            .filter(|(v, _)| self.matches(v))
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, s)| s)
    }
}

/// One `||` alternative: `A - B`, or comparators separated by spaces or commas (an operator may
/// stand apart from its version: `>= 1.2`). A bare version means exactly that version, as in Helm.
fn parse_alternative(alternative: &str) -> Result<VersionReq, semver::Error> {
    if let Some((low, high)) = alternative.split_once(" - ") {
        return VersionReq::parse(&format!(
            ">={}, <={}",
            low.trim().trim_start_matches('v'),
            high.trim().trim_start_matches('v')
        ));
    }
    let mut comparators = Vec::new();
    let mut operator = String::new();
    for token in alternative
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        if token.chars().all(|c| "<>=~^".contains(c)) {
            operator.push_str(token);
            continue;
        }
        let split = token
            .find(|c: char| !"<>=~^".contains(c))
            .unwrap_or(token.len());
        let (op, version) = token.split_at(split);
        operator.push_str(op);
        let version = version.trim_start_matches('v');
        let wildcard = version == "*" || version.split('.').any(|p| matches!(p, "x" | "X" | "*"));
        if operator.is_empty() && !wildcard {
            operator.push('=');
        }
        comparators.push(format!("{operator}{version}"));
        operator.clear();
    }
    VersionReq::parse(&comparators.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [&str; 8] = [
        "3.9.0",
        "4.0.0",
        "4.10.1",
        "4.11.0",
        "4.11.3",
        "v4.12.0-rc.1",
        "5.0.0",
        "not-semver",
    ];

    fn check(constraint: &str, expected: Option<&str>) {
        let c = Constraint::parse(constraint).unwrap_or_else(|e| panic!("{constraint}: {e}"));
        assert_eq!(c.select(VERSIONS), expected, "{constraint}");
    }

    #[test]
    fn exact_versions_and_ranges_as_helm_reads_them() {
        check("4.11.0", Some("4.11.0"));
        check("v4.11.0", Some("4.11.0"));
        check("4.11.2", None);
        check("v4.12.0-rc.1", Some("v4.12.0-rc.1"));
        check(">=4.0.0 <5.0.0", Some("4.11.3"));
        check(">= 4.0.0, < 5.0.0", Some("4.11.3"));
        check("^4.10", Some("4.11.3"));
        check("~4.10.0", Some("4.10.1"));
        check("4.11.x", Some("4.11.3"));
        check("4.11", Some("4.11.3"));
        check("*", Some("5.0.0"));
        check("4.0.0 - 4.10.9", Some("4.10.1"));
        check("<4.0.0 || >=4.11.0 <4.11.3", Some("4.11.0"));
        check(">=6", None);
        // Pre-releases only when the range names one of the same version.
        check(">=4.12.0-0 <4.13.0", Some("v4.12.0-rc.1"));
    }

    #[test]
    fn bad_constraints_are_explained() {
        for bad in ["", "latest", ">=x.y", "4.0.0 - "] {
            let err = Constraint::parse(bad).unwrap_err();
            assert!(err.contains("chart version"), "{bad}: {err}");
        }
    }
}

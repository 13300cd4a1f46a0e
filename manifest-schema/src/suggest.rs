//! "Did you mean" suggestions for misspelled keys and values.

/// The candidate closest to `input`, if it is close enough to be a plausible typo: a few
/// edits away (transpositions count once) or very similar by Jaro-Winkler.
pub(crate) fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    candidates
        .iter()
        .filter_map(|&candidate| {
            let lower = candidate.to_ascii_lowercase();
            let distance = strsim::damerau_levenshtein(&input, &lower);
            let similarity = strsim::jaro_winkler(&input, &lower);
            let close = distance <= (lower.chars().count() / 3).max(1) || similarity >= 0.85;
            close.then_some((candidate, distance, similarity))
        })
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(candidate, _, _)| candidate)
}

/// `` `a`, `b`, `c` ``
pub(crate) fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "a", "a and b", "a, b and c".
pub(crate) fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Hint for an unknown value of an enumerated setting: a suggestion plus every valid value.
pub(crate) fn unknown_value_hint(input: &str, valid: &[&str]) -> String {
    match did_you_mean(input, valid) {
        Some(best) => format!(
            "did you mean `{best}`? valid values: {}",
            quoted_list(valid)
        ),
        None => format!("valid values: {}", quoted_list(valid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_prose() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(and_list(&items(&["a"])), "a");
        assert_eq!(and_list(&items(&["a", "b"])), "a and b");
        assert_eq!(and_list(&items(&["a", "b", "c"])), "a, b and c");
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["precision", "optimization_level", "toolchain"];
        assert_eq!(did_you_mean("precison", &keys), Some("precision"));
        assert_eq!(
            did_you_mean("optimisation_level", &keys),
            Some("optimization_level")
        );
        assert_eq!(did_you_mean("zzz", &keys), None);
        assert_eq!(did_you_mean("otp", &["min", "opt", "max"]), Some("opt"));
        assert_eq!(did_you_mean("mid", &["min", "opt", "max"]), Some("min"));
        assert_eq!(
            did_you_mean("fp61", &["fp32", "fp16", "int8"]),
            Some("fp16")
        );
    }
}

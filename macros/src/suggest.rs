//! "Did you mean" suggestions for unknown keys and names.

/// The candidate nearest to `name` by edit distance, if it is close enough
/// to be a plausible typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The Levenshtein distance between `a` and `b`, over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("pod_count", "pod_count"), 0);
        assert_eq!(edit_distance("pod_cuont", "pod_count"), 2);
    }

    #[test]
    fn suggests_the_nearest_close_candidate_only() {
        let keys = ["llm_d.kv_cache.pod_count", "llm_d.kv_cache.token_count"];
        assert_eq!(
            nearest("llm_d.kv_cache.pod_cout", keys),
            Some("llm_d.kv_cache.pod_count")
        );
        assert_eq!(nearest("myapp.totally_different", keys), None);
    }
}

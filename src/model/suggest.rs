//! "Did you mean": the distance between a misspelt key and the keys a reader knows, shared
//! by every parser of user input that names keys (the host config, CNI network configs).

/// Levenshtein distance: the fewest single-character insertions, deletions and
/// substitutions that turn `a` into `b`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn counts_single_character_edits() {
        assert_eq!(edit_distance("vlan", "vlan"), 0);
        assert_eq!(edit_distance("vlna", "vlan"), 2);
        assert_eq!(edit_distance("vlam", "vlan"), 1);
        assert_eq!(edit_distance("", "mtu"), 3);
        assert_eq!(edit_distance("pools", "pool"), 1);
    }
}

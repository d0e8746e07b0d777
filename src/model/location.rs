//! Positions in the files users write (hardware profiles, the provisioning config), so that
//! every complaint about one can say `file:line:col` the way compilers do, and editors can
//! jump there. One converter from byte offsets (what toml spans give) to lines and columns,
//! shared by every parser, so they all count the same way.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A position in a user's file, 1-based, columns counted in characters (an editor's idea of a
/// column, not a byte offset: a name with `é` in it must not shift the caret).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// As the user named it; serialized lossily so that JSON output can never fail on it.
    #[serde(serialize_with = "path_lossy")]
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` in `text`, the contents of `path`. An offset past the
    /// end, or inside a multi-byte character, is clamped to the nearest position before it, so
    /// a span from any parser yields some position rather than a panic.
    pub fn at(path: &Path, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            path: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Serializes a path as text, replacing what is not UTF-8, so that JSON output never fails.
pub(crate) fn path_lossy<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        let at = |o| {
            let l = Location::at(Path::new("f.toml"), text, o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        assert_eq!(at(11), (2, 6));
        assert_eq!(at(1000), (3, 1), "past the end clamps to the end");
    }

    #[test]
    fn offsets_inside_a_character_clamp_back() {
        let at = Location::at(Path::new("f"), "é", 1);
        assert_eq!((at.line, at.column), (1, 1));
    }

    #[test]
    fn displays_as_file_line_col_and_serializes_its_parts() {
        let at = Location::at(Path::new("dir/host.toml"), "x\ny = 1", 6);
        assert_eq!(at.to_string(), "dir/host.toml:2:5");
        assert_eq!(
            serde_json::to_value(&at).unwrap(),
            serde_json::json!({"path": "dir/host.toml", "line": 2, "column": 5})
        );
    }
}

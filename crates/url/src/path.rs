//! Path normalisation: dot-segments and repeated slashes.

use crate::escape::escape;

/// Resolves `.` and `..` segments, collapses runs of `/`, keeps a trailing `/`,
/// and escapes the result. Input is already unescaped.
pub(crate) fn canonical_path(raw: &[u8]) -> String {
    let mut segs: Vec<&[u8]> = Vec::new();
    let mut trailing = raw.is_empty() || raw.ends_with(b"/");
    for seg in raw.split(|&b| b == b'/') {
        match seg {
            b"" => {}
            b"." => trailing = true,
            b".." => {
                segs.pop();
                trailing = true;
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    if raw.ends_with(b"/") {
        trailing = true;
    }
    let mut out = String::with_capacity(raw.len() + 1);
    out.push('/');
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&escape(s));
    }
    if trailing && !segs.is_empty() {
        out.push('/');
    }
    out
}

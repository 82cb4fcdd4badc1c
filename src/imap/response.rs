//! Reading the back end's answers during the login exchange: response
//! codes, capability lists, and whether a value can go as a quoted string.
//! Pure functions over bytes.

use super::backend::MAX_QUOTED_VALUE;

/// Quoted strings carry 7-bit text without CR, LF or NUL.
pub(super) fn can_quote(value: &[u8]) -> bool {
    value.len() <= MAX_QUOTED_VALUE
        && value
            .iter()
            .all(|&b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n')
}

pub(super) fn strip_prefix_ci<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &line[prefix.len()..])
}

/// The response code `[CODE …]` at the start of resp-text, upper-cased word.
pub(super) fn response_code(rest: &[u8]) -> Option<String> {
    let text = rest.strip_prefix(b" ")?.strip_prefix(b"[")?;
    let end = text.iter().position(|&b| b == b']' || b == b' ')?;
    Some(String::from_utf8_lossy(&text[..end]).to_ascii_uppercase())
}

/// The list inside `[CAPABILITY …]` at the start of resp-text.
pub(super) fn capability_code(rest: &[u8]) -> Option<String> {
    let text = rest.strip_prefix(b" ")?;
    let inner = strip_prefix_ci(text, b"[CAPABILITY ")?;
    let end = inner.iter().position(|&b| b == b']')?;
    let list = &inner[..end];
    // Nearly always ASCII: checked a word at a time, not char by char.
    Some(match std::str::from_utf8(list) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(list).into_owned(),
    })
}

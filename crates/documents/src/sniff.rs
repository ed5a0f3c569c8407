//! Content types: the allow list, and what the first bytes of an upload say it is.
//!
//! The declared type of an upload is only a claim; the magic bytes decide. An upload
//! whose bytes name no allowed type, or another type than the one declared, is
//! refused before anything is stored. This module never looks past the first chunk.

/// The content types a document may have.
pub const ALLOWED: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/tiff",
    "application/zip",
    DOCX,
    "text/plain",
];

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Why a declared type was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("content type {0} is not accepted; accepted: {accepted}", accepted = ALLOWED.join(", "))]
    NotAllowed(String),
    #[error("the content is not of any accepted type")]
    Unrecognised,
    #[error("the content is {sniffed}, not the declared {declared}")]
    Mismatch {
        declared: String,
        sniffed: &'static str,
    },
}

/// The type the bytes say: `head` is the start of the content (at least the first
/// few hundred bytes when the content is that long).
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
        (b"PK\x03\x04", "application/zip"),
    ];
    if let Some((_, content_type)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(content_type);
    }
    is_text(head).then_some("text/plain")
}

/// UTF-8 without control characters other than tab, line feed, form feed and
/// carriage return; a multi-byte character cut at the end of `head` is allowed.
fn is_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(err) if err.error_len().is_none() && head.len() - err.valid_up_to() < 4 => {
            std::str::from_utf8(&head[..err.valid_up_to()]).expect("BUG: valid up to here")
        }
        Err(_) => return false,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\x0c' | '\r'))
}

/// Checks `declared` (parameters such as `; charset=utf-8` ignored) against the
/// allow list and against what `head` is; returns the type to store.
pub fn check(declared: &str, head: &[u8]) -> Result<&'static str, SniffError> {
    let declared = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(allowed) = ALLOWED.iter().find(|allowed| **allowed == declared) else {
        return Err(SniffError::NotAllowed(declared));
    };
    let sniffed = sniff(head).ok_or(SniffError::Unrecognised)?;
    // A .docx is a zip archive: its magic bytes are the zip's.
    let agrees = sniffed == *allowed || (*allowed == DOCX && sniffed == "application/zip");
    if !agrees {
        return Err(SniffError::Mismatch { declared, sniffed });
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_the_type() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Some("application/pdf"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0"), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a.."), Some("image/gif"));
        assert_eq!(sniff(b"II*\x00...."), Some("image/tiff"));
        assert_eq!(sniff(b"PK\x03\x04...."), Some("application/zip"));
        assert_eq!(
            sniff("Referral letter, café.\r\n".as_bytes()),
            Some("text/plain")
        );
        assert_eq!(sniff(b"\x7fELF\x02\x01"), None);
    }

    #[test]
    fn a_character_cut_at_the_end_of_the_head_is_still_text() {
        let text = "é".repeat(10);
        assert_eq!(sniff(&text.as_bytes()[..7]), Some("text/plain"));
    }

    #[test]
    fn a_declared_type_that_contradicts_the_bytes_is_refused() {
        assert_eq!(
            check("image/png", b"%PDF-1.4"),
            Err(SniffError::Mismatch {
                declared: "image/png".into(),
                sniffed: "application/pdf"
            })
        );
        assert_eq!(
            check("application/x-msdownload", b"MZ"),
            Err(SniffError::NotAllowed("application/x-msdownload".into()))
        );
        assert_eq!(
            check("application/pdf", b"\x00\x01\x02"),
            Err(SniffError::Unrecognised)
        );
        assert_eq!(
            check("Text/Plain; charset=utf-8", b"hello"),
            Ok("text/plain")
        );
        assert_eq!(check(DOCX, b"PK\x03\x04"), Ok(DOCX));
    }
}

//! The two base-14 fonts the renderer uses — Helvetica and Helvetica-Bold — under
//! WinAnsiEncoding: how a character is encoded and how wide its glyph is.
//!
//! The widths are Adobe's published metrics for these fonts (units of 1/1000 em),
//! indexed by WinAnsi code from 32. PDF viewers carry these fonts, so nothing is
//! embedded and no font file is read. A character WinAnsi cannot encode is drawn as
//! [`REPLACEMENT`], visibly: the PDF never drops text silently.

/// What a character outside WinAnsi is drawn as.
pub const REPLACEMENT: char = '?';

/// Regular or bold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Regular,
    Bold,
}

impl Face {
    /// The resource name the page content uses.
    pub(super) const fn resource(self) -> &'static [u8] {
        match self {
            Face::Regular => b"F1",
            Face::Bold => b"F2",
        }
    }

    pub(super) const fn base_font(self) -> &'static [u8] {
        match self {
            Face::Regular => b"Helvetica",
            Face::Bold => b"Helvetica-Bold",
        }
    }

    pub(super) fn widths(self) -> &'static [u16; 224] {
        match self {
            Face::Regular => &HELVETICA,
            Face::Bold => &HELVETICA_BOLD,
        }
    }
}

/// The WinAnsi code of `c`, if it has one (control characters have none).
pub fn encode(c: char) -> Option<u8> {
    let code = u32::from(c);
    match code {
        0x20..=0x7E | 0xA0..=0xFF => Some(u8::try_from(code).expect("BUG: matched range")),
        _ => match c {
            '\u{20AC}' => Some(0x80),
            '\u{201A}' => Some(0x82),
            '\u{0192}' => Some(0x83),
            '\u{201E}' => Some(0x84),
            '\u{2026}' => Some(0x85),
            '\u{2020}' => Some(0x86),
            '\u{2021}' => Some(0x87),
            '\u{02C6}' => Some(0x88),
            '\u{2030}' => Some(0x89),
            '\u{0160}' => Some(0x8A),
            '\u{2039}' => Some(0x8B),
            '\u{0152}' => Some(0x8C),
            '\u{017D}' => Some(0x8E),
            '\u{2018}' => Some(0x91),
            '\u{2019}' => Some(0x92),
            '\u{201C}' => Some(0x93),
            '\u{201D}' => Some(0x94),
            '\u{2022}' => Some(0x95),
            '\u{2013}' => Some(0x96),
            '\u{2014}' => Some(0x97),
            '\u{02DC}' => Some(0x98),
            '\u{2122}' => Some(0x99),
            '\u{0161}' => Some(0x9A),
            '\u{203A}' => Some(0x9B),
            '\u{0153}' => Some(0x9C),
            '\u{017E}' => Some(0x9E),
            '\u{0178}' => Some(0x9F),
            _ => None,
        },
    }
}

/// `c` as WinAnsi, or [`REPLACEMENT`].
pub fn encode_or_replace(c: char) -> u8 {
    encode(c).unwrap_or(b'?')
}

/// The width of `text` in points at `size`, as it will be drawn.
pub fn text_width(face: Face, size: f32, text: &str) -> f32 {
    let widths = face.widths();
    let units: u32 = text
        .chars()
        .map(|c| u32::from(widths[usize::from(encode_or_replace(c) - 32)]))
        .sum();
    // Exact: a line's units stay far below 2^24.
    units as f32 * size / 1000.0
}

const HELVETICA: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
    0, 556, 0, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0, 0, 222, 222,
    333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 0, 500, 667, 278, 333, 556, 556, 556, 556,
    260, 556, 333, 737, 370, 556, 584, 333, 737, 333, 400, 584, 333, 333, 333, 578, 537, 278, 333,
    333, 365, 556, 834, 834, 834, 611, 667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667,
    278, 278, 278, 278, 722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667,
    611, 556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278, 556, 556,
    556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

const HELVETICA_BOLD: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
    0, 556, 0, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0, 0, 278, 278,
    500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 0, 500, 667, 278, 333, 556, 556, 556, 556,
    280, 556, 333, 737, 370, 556, 584, 333, 737, 333, 400, 584, 333, 333, 333, 611, 556, 278, 333,
    333, 365, 556, 834, 834, 834, 611, 722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667,
    278, 278, 278, 278, 722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667,
    611, 556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278, 611, 611,
    611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_1_and_windows_punctuation_encode_and_the_rest_is_replaced() {
        assert_eq!(encode('A'), Some(b'A'));
        assert_eq!(encode('é'), Some(0xE9));
        assert_eq!(encode('€'), Some(0x80));
        assert_eq!(encode('—'), Some(0x97));
        assert_eq!(encode('\n'), None);
        assert_eq!(encode('日'), None);
        assert_eq!(encode_or_replace('日'), b'?');
    }

    #[test]
    fn widths_are_helvetica_metrics() {
        // "Hello" in Helvetica: H 722 + e 556 + l 222 + l 222 + o 556 = 2278 units.
        assert!((text_width(Face::Regular, 10.0, "Hello") - 22.78).abs() < 1e-3);
        assert!(text_width(Face::Bold, 10.0, "Hello") > text_width(Face::Regular, 10.0, "Hello"));
    }
}

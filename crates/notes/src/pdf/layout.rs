//! Page layout: blocks of wrapped text and simple ruled tables, cut into A4 pages
//! with a header and a "Page X of Y" footer on each, written as PDF objects.
//!
//! Everything here is a pure function of its input: no clock, no randomness, no
//! hash-map order. The file identifier is derived from the pages' content, so the
//! same blocks always give the same bytes.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sha2::{Digest, Sha256};

use super::font::{self, Face};

/// A4 portrait, in points.
pub const PAGE_WIDTH: f32 = 595.28;
pub const PAGE_HEIGHT: f32 = 841.89;
pub const MARGIN: f32 = 56.0;
/// Where the body starts below the header, and where it must stop above the footer.
const BODY_GAP: f32 = 16.0;
const BODY_BOTTOM: f32 = 54.0;
const FOOTER_BASELINE: f32 = 30.0;
/// Cell padding in tables.
const CELL_PAD: f32 = 4.0;
/// No document is cut into more pages than this: a note's sections are bounded
/// (`SECTION_LEN_MAX`), so reaching it is a bug, not a large note.
pub const PAGES_MAX: usize = 10_000;

pub const fn body_width() -> f32 {
    PAGE_WIDTH - 2.0 * MARGIN
}

/// One thing drawn on a line, at an offset from the line's top-left corner.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// Text with its baseline `dy` below the line's top.
    Text {
        dx: f32,
        dy: f32,
        face: Face,
        size: f32,
        gray: f32,
        text: String,
    },
    /// A horizontal rule `dy` below the line's top.
    HRule { dx0: f32, dx1: f32, dy: f32 },
    /// A vertical rule over the whole line.
    VRule { dx: f32 },
}

/// A horizontal strip of the body: the unit that pages are cut between.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    height: f32,
    /// Moves to the next page with the line after it (a heading, a table's header).
    keep_with_next: bool,
    ops: Vec<Op>,
}

impl Line {
    fn is_blank(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The body, as lines, built top to bottom.
#[derive(Debug, Default)]
pub struct Body {
    lines: Vec<Line>,
}

/// A table column: its title and its share of the body's width.
pub struct Column<'a> {
    pub title: &'a str,
    pub width: f32,
}

impl Body {
    pub fn space(&mut self, height: f32) {
        self.lines.push(Line {
            height,
            ..Line::default()
        });
    }

    /// One line of bold text that stays with what follows it.
    pub fn heading(&mut self, text: &str, size: f32) {
        let width = body_width();
        for (i, part) in wrap(text, Face::Bold, size, width).into_iter().enumerate() {
            if i == 0 {
                self.space(size * 0.6);
            }
            self.lines.push(Line {
                height: size * 1.3,
                keep_with_next: true,
                ops: vec![Op::Text {
                    dx: 0.0,
                    dy: size,
                    face: Face::Bold,
                    size,
                    gray: 0.0,
                    text: part,
                }],
            });
        }
    }

    /// Wrapped text, paragraphs kept.
    pub fn paragraph(&mut self, text: &str, face: Face, size: f32, gray: f32) {
        for part in wrap(text, face, size, body_width()) {
            self.lines.push(Line {
                height: size * 1.35,
                keep_with_next: false,
                ops: if part.is_empty() {
                    Vec::new()
                } else {
                    vec![Op::Text {
                        dx: 0.0,
                        dy: size,
                        face,
                        size,
                        gray,
                        text: part,
                    }]
                },
            });
        }
    }

    /// A ruled table: a bold header row, then `rows`, each cell wrapped to its
    /// column. A row taller than what is left of a page continues on the next.
    pub fn table(&mut self, columns: &[Column<'_>], rows: &[Vec<String>]) {
        const SIZE: f32 = 9.0;
        const LEADING: f32 = 11.5;
        let total: f32 = columns.iter().map(|column| column.width).sum();
        let edges: Vec<f32> = std::iter::once(0.0)
            .chain(columns.iter().scan(0.0, |x, column| {
                *x += column.width;
                Some(*x)
            }))
            .collect();
        let header: Vec<String> = columns.iter().map(|c| c.title.to_owned()).collect();
        let all =
            std::iter::once((&header, Face::Bold)).chain(rows.iter().map(|r| (r, Face::Regular)));
        let n_rows = rows.len() + 1;
        for (i_row, (cells, face)) in all.enumerate() {
            assert_eq!(
                cells.len(),
                columns.len(),
                "BUG: a row has one cell per column"
            );
            let wrapped: Vec<Vec<String>> = cells
                .iter()
                .zip(columns)
                .map(|(cell, column)| wrap(cell, face, SIZE, column.width - 2.0 * CELL_PAD))
                .collect();
            let n_lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
            for i_line in 0..n_lines {
                let first = i_line == 0;
                let last = i_line + 1 == n_lines;
                let top = if first { CELL_PAD } else { 0.0 };
                let height = LEADING + top + if last { CELL_PAD } else { 0.0 };
                let mut ops: Vec<Op> = edges.iter().map(|&dx| Op::VRule { dx }).collect();
                if first {
                    ops.push(Op::HRule {
                        dx0: 0.0,
                        dx1: total,
                        dy: 0.0,
                    });
                }
                if last && i_row + 1 == n_rows {
                    ops.push(Op::HRule {
                        dx0: 0.0,
                        dx1: total,
                        dy: height,
                    });
                }
                for (i_col, parts) in wrapped.iter().enumerate() {
                    if let Some(part) = parts.get(i_line).filter(|part| !part.is_empty()) {
                        ops.push(Op::Text {
                            dx: edges[i_col] + CELL_PAD,
                            dy: top + SIZE,
                            face,
                            size: SIZE,
                            gray: 0.0,
                            text: part.clone(),
                        });
                    }
                }
                self.lines.push(Line {
                    height,
                    // The header row goes with the first row below it.
                    keep_with_next: i_row == 0,
                    ops,
                });
            }
        }
    }
}

/// Splits `text` into lines no wider than `width`: paragraphs at newlines (kept,
/// blank ones too), words at spaces, a word wider than a line at characters.
/// Tabs count as four spaces; carriage returns and other control characters are
/// dropped.
pub fn wrap(text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let paragraph: String = paragraph
            .chars()
            .flat_map(|c| match c {
                '\t' => vec![' '; 4],
                c if c.is_control() => Vec::new(),
                c => vec![c],
            })
            .collect();
        let mut line = String::new();
        for word in paragraph.trim_end().split(' ') {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if font::text_width(face, size, &candidate) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // The word alone: cut it where it overflows.
            for c in word.chars() {
                line.push(c);
                if font::text_width(face, size, &line) > width && line.chars().count() > 1 {
                    line.pop();
                    lines.push(std::mem::take(&mut line));
                    line.push(c);
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// What every page shows above its body: lines of (face, size, text).
pub struct Header {
    pub lines: Vec<(Face, f32, String)>,
}

/// Cuts `body` into pages and writes the PDF. `title` goes into the document
/// information (it must carry no PHI); `footer_left` is printed on every page.
pub fn write(header: &Header, body: Body, title: &str, footer_left: &str) -> (Vec<u8>, usize) {
    let header_height: f32 = header.lines.iter().map(|(_, size, _)| size * 1.35).sum();
    let body_top = PAGE_HEIGHT - MARGIN * 0.7 - header_height - BODY_GAP;
    let pages = paginate(body.lines, body_top - BODY_BOTTOM);
    let n_pages = pages.len();

    let contents: Vec<Vec<u8>> = pages
        .iter()
        .enumerate()
        .map(|(i, lines)| page_content(header, lines, body_top, i + 1, n_pages, footer_left))
        .collect();

    let catalog_id = Ref::new(1);
    let tree_id = Ref::new(2);
    let regular_id = Ref::new(3);
    let bold_id = Ref::new(4);
    let info_id = Ref::new(5);
    let page_ids: Vec<Ref> = (0..n_pages)
        .map(|i| Ref::new(6 + 2 * i32::try_from(i).expect("BUG: pages are bounded")))
        .collect();

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(tree_id);
    pdf.pages(tree_id)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(n_pages).expect("BUG: pages are bounded"));
    for face in [Face::Regular, Face::Bold] {
        let id = if face == Face::Regular {
            regular_id
        } else {
            bold_id
        };
        pdf.type1_font(id)
            .base_font(Name(face.base_font()))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    // No creation date: the same note must give the same bytes.
    pdf.document_info(info_id)
        .title(TextStr(title))
        .producer(TextStr("Tenet"));
    let mut file_hash = Sha256::new();
    for (page_id, content) in page_ids.iter().zip(&contents) {
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(*page_id);
        page.parent(tree_id)
            .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(Name(Face::Regular.resource()), regular_id)
            .pair(Name(Face::Bold.resource()), bold_id);
        page.finish();
        pdf.stream(content_id, content);
        file_hash.update(content);
    }
    // The file identifier: from the content, never random.
    let id = file_hash.finalize()[..16].to_vec();
    pdf.set_file_id((id.clone(), id));
    (pdf.finish(), n_pages)
}

/// Lines per page: a line goes to the next page when it does not fit, and so does a
/// `keep_with_next` line whose followers would not fit beside it. Blank lines at the
/// top of a page are dropped.
fn paginate(lines: Vec<Line>, body_height: f32) -> Vec<Vec<Line>> {
    let mut pages: Vec<Vec<Line>> = vec![Vec::new()];
    let mut used = 0.0_f32;
    let heights: Vec<f32> = lines.iter().map(|line| line.height).collect();
    let keeps: Vec<bool> = lines.iter().map(|line| line.keep_with_next).collect();
    for (i, line) in lines.into_iter().enumerate() {
        let page = pages.last_mut().expect("BUG: there is always a page");
        if page.is_empty() && line.is_blank() {
            continue;
        }
        // A heading with what follows it: keep_with_next lines chain (a heading, a
        // table's header row) up to the first line that does not keep.
        let n_kept = keeps[i..].iter().take_while(|&&keep| keep).count();
        let needed: f32 = heights[i..].iter().take(n_kept + 1).sum();
        if !page.is_empty() && used + needed > body_height {
            assert!(
                pages.len() < PAGES_MAX,
                "BUG: a note does not fill {PAGES_MAX} pages"
            );
            pages.push(Vec::new());
            used = 0.0;
            if line.is_blank() {
                continue;
            }
        }
        used += line.height;
        pages
            .last_mut()
            .expect("BUG: there is always a page")
            .push(line);
    }
    pages
}

fn show(content: &mut Content, face: Face, size: f32, gray: f32, x: f32, y: f32, text: &str) {
    let bytes: Vec<u8> = text.chars().map(font::encode_or_replace).collect();
    content
        .set_fill_gray(gray)
        .begin_text()
        .set_font(Name(face.resource()), size)
        .next_line(x, y)
        .show(Str(&bytes))
        .end_text();
}

fn page_content(
    header: &Header,
    lines: &[Line],
    body_top: f32,
    page_number: usize,
    n_pages: usize,
    footer_left: &str,
) -> Vec<u8> {
    let mut content = Content::new();
    content.set_line_width(0.5).set_stroke_gray(0.35);

    let mut y = PAGE_HEIGHT - MARGIN * 0.7;
    for (face, size, text) in &header.lines {
        y -= size * 1.35;
        show(&mut content, *face, *size, 0.0, MARGIN, y, text);
    }
    let rule_y = y - BODY_GAP / 2.0;
    content
        .move_to(MARGIN, rule_y)
        .line_to(PAGE_WIDTH - MARGIN, rule_y)
        .stroke();

    let mut top = body_top;
    for line in lines {
        for op in &line.ops {
            match op {
                Op::Text {
                    dx,
                    dy,
                    face,
                    size,
                    gray,
                    text,
                } => show(
                    &mut content,
                    *face,
                    *size,
                    *gray,
                    MARGIN + dx,
                    top - dy,
                    text,
                ),
                Op::HRule { dx0, dx1, dy } => {
                    content
                        .move_to(MARGIN + dx0, top - dy)
                        .line_to(MARGIN + dx1, top - dy)
                        .stroke();
                }
                Op::VRule { dx } => {
                    content
                        .move_to(MARGIN + dx, top)
                        .line_to(MARGIN + dx, top - line.height)
                        .stroke();
                }
            }
        }
        top -= line.height;
    }

    content
        .move_to(MARGIN, FOOTER_BASELINE + 12.0)
        .line_to(PAGE_WIDTH - MARGIN, FOOTER_BASELINE + 12.0)
        .stroke();
    show(
        &mut content,
        Face::Regular,
        7.0,
        0.3,
        MARGIN,
        FOOTER_BASELINE,
        footer_left,
    );
    let page_label = format!("Page {page_number} of {n_pages}");
    let label_width = font::text_width(Face::Regular, 9.0, &page_label);
    show(
        &mut content,
        Face::Regular,
        9.0,
        0.0,
        PAGE_WIDTH - MARGIN - label_width,
        FOOTER_BASELINE,
        &page_label,
    );
    content.finish().into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_paragraphs_and_fits_every_line() {
        let text = "one two three four five six seven eight nine ten\n\nshort";
        let lines = wrap(text, Face::Regular, 10.0, 100.0);
        assert!(lines.len() > 3, "{lines:?}");
        assert!(lines.contains(&String::new()));
        assert_eq!(lines.last().map(String::as_str), Some("short"));
        for line in &lines {
            assert!(
                font::text_width(Face::Regular, 10.0, line) <= 100.0,
                "{line}"
            );
        }
    }

    #[test]
    fn no_page_ends_with_a_heading_or_a_table_header_whatever_precedes_them() {
        // Push a heading and a table to every position near a page's end.
        for n_lines in 40..70 {
            let mut body = Body::default();
            for i in 0..n_lines {
                body.paragraph(&format!("line {i}"), Face::Regular, 10.0, 0.0);
            }
            body.heading("Signature", 13.0);
            body.table(
                &[
                    Column {
                        title: "Field",
                        width: 100.0,
                    },
                    Column {
                        title: "Value",
                        width: 200.0,
                    },
                ],
                &[vec!["Signed by".to_owned(), "someone".to_owned()]],
            );
            let pages = paginate(body.lines, 700.0);
            for page in &pages[..pages.len() - 1] {
                let last = page.last().expect("no empty page");
                assert!(!last.keep_with_next, "{n_lines}: a page ends with {last:?}");
            }
        }
    }

    #[test]
    fn a_word_wider_than_a_line_is_cut_and_nothing_is_lost() {
        let word = "x".repeat(200);
        let lines = wrap(&word, Face::Regular, 10.0, 100.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), word);
    }
}

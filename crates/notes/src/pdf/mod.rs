//! Signed notes as PDF: a clean, paginated, byte-for-byte reproducible record.
//!
//! - [`render`] (pure: no database, no clock) lays a [`Note<Signed>`] and its signed
//!   amendments out on A4 pages: a header on every page with the patient identifiers
//!   the tenant allows ([`Identifiers`]: the pseudonym always), the note's title,
//!   template and dates, each section's text wrapped, the signature and
//!   co-signature blocks, the amendment history as a table (each amendment then in
//!   full, pointing at the original), and "Page X of Y" on every page. Only a
//!   `Note<Signed>` can be rendered: a draft has no PDF.
//! - [`store`] is the audited path: [`render_signed`] opens a signed note and its
//!   amendments in the tenant's transaction (recording `note.read` for each, and
//!   `patient.read` when it reads identifiers from the vault), [`record_rendition`]
//!   writes the hash of what was rendered to `notes.renditions`.
//! - [`job`]: the durable job `notes.render_pdf` (arguments: the note id only).
//!
//! The same input always gives the same bytes — no creation date, a file identifier
//! derived from the content — so the SHA-256 recorded for a rendition proves which
//! document was produced. Text is drawn in the base-14 Helvetica fonts with
//! WinAnsiEncoding, nothing embedded; a character outside WinAnsi is drawn as
//! [`font::REPLACEMENT`] (`?`). A PDF holds PHI: this module never logs it, never
//! puts it in an error, and writes only ids into the file's metadata.

pub mod font;
pub mod job;
pub mod layout;
pub mod store;

use std::fmt;

use kernel::PatientId;
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::note::{Kind, Note, Signed};
use font::Face;
use layout::{Body, Column, Header};

pub use job::{RenderPdf, RenderPdfArgs};
pub use store::{
    RenderError, Rendition, latest_rendition, record_rendition, render_and_record, render_signed,
};

/// Who the note is about, as far as the tenant lets a PDF say (the tenant's
/// `pdf_identifiers` setting). The pseudonym is always shown. `Debug` redacts.
#[derive(Clone, PartialEq, Eq)]
pub struct Identifiers {
    pub pseudonym: PatientId,
    /// The medical record number (the vault's `MR` identifier).
    pub record_number: Option<String>,
    /// Given names and family name.
    pub name: Option<String>,
    pub birth_date: Option<Date>,
}

impl Identifiers {
    /// The pseudonym alone: the default.
    pub fn pseudonym(patient_id: PatientId) -> Self {
        Self {
            pseudonym: patient_id,
            record_number: None,
            name: None,
            birth_date: None,
        }
    }
}

impl fmt::Debug for Identifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identifiers")
            .field("pseudonym", &self.pseudonym)
            .field(
                "record_number",
                &self.record_number.as_ref().map(|_| "[redacted]"),
            )
            .field("name", &self.name.as_ref().map(|_| "[redacted]"))
            .field("birth_date", &self.birth_date.map(|_| "[redacted]"))
            .finish()
    }
}

/// A rendered PDF and its SHA-256. `Debug` prints the size and hash, never bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedPdf {
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
    pub n_pages: usize,
}

impl fmt::Debug for RenderedPdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedPdf")
            .field("n_bytes", &self.bytes.len())
            .field("sha256", &hex::encode(self.sha256))
            .field("n_pages", &self.n_pages)
            .finish()
    }
}

/// An instant as the PDF prints it: UTC, to the second.
fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn day(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn pairs(rows: &[(&str, String)]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|(key, value)| vec![(*key).to_owned(), value.clone()])
        .collect()
}

const KEY_VALUE: [Column<'static>; 2] = [
    Column {
        title: "Field",
        width: 130.0,
    },
    Column {
        title: "Value",
        width: layout::body_width() - 130.0,
    },
];

fn cosignature(signed: &Signed) -> Vec<(&'static str, String)> {
    match (&signed.cosignature, signed.cosign_required) {
        (Some(cosignature), _) => vec![
            ("Co-signed by", format!("user {}", cosignature.by)),
            ("Co-signed at", when(cosignature.at)),
        ],
        (None, true) => vec![("Co-signature", "Required, awaiting co-signature".to_owned())],
        (None, false) => vec![("Co-signature", "Not required".to_owned())],
    }
}

fn sections(body: &mut Body, note: &Note<Signed>, heading_size: f32) {
    let template = note.header().template;
    for section in template.sections {
        body.heading(section.title, heading_size);
        match note.content().section(section.key) {
            Some(text) => body.paragraph(text, Face::Regular, 10.0, 0.0),
            None => body.paragraph("Not recorded.", Face::Regular, 10.0, 0.45),
        }
    }
}

/// Renders a signed note and its signed amendments (oldest first) to PDF. Pure:
/// the same arguments always give the same bytes.
pub fn render(
    note: &Note<Signed>,
    amendments: &[Note<Signed>],
    identifiers: &Identifiers,
) -> RenderedPdf {
    let header = note.header();
    let signed = note.state();
    let template = header.template;

    let mut page_header = vec![(
        Face::Bold,
        10.0,
        format!("Patient {}", identifiers.pseudonym),
    )];
    let allowed: Vec<String> = [
        identifiers
            .record_number
            .as_ref()
            .map(|mrn| format!("Record number: {mrn}")),
        identifiers
            .name
            .as_ref()
            .map(|name| format!("Name: {name}")),
        identifiers
            .birth_date
            .map(|date| format!("Date of birth: {}", day(date))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !allowed.is_empty() {
        page_header.push((Face::Regular, 9.0, allowed.join("    ")));
    }
    page_header.push((
        Face::Regular,
        9.0,
        format!(
            "{} ({template}) \u{b7} note {} \u{b7} care {}",
            template.title,
            header.id,
            when(header.service_at)
        ),
    ));

    let mut body = Body::default();
    body.heading(template.title, 16.0);
    if let Kind::Amendment { amends } = header.kind {
        body.paragraph(
            &format!("Amendment of note {amends}"),
            Face::Regular,
            10.0,
            0.0,
        );
    }
    body.space(4.0);
    let mut details = vec![
        ("Note", header.id.to_string()),
        ("Template", format!("{} ({template})", template.title)),
        ("Author", format!("user {}", header.author_id)),
        ("Care", when(header.service_at)),
        ("Written", when(header.created_at)),
        ("Signed", when(signed.signed_at)),
    ];
    if let Some(encounter_id) = header.encounter_id {
        details.push(("Encounter", encounter_id.to_string()));
    }
    if let Some(appointment_id) = header.appointment_id {
        details.push(("Appointment", appointment_id.to_string()));
    }
    if let Some(reason) = note.content().reason() {
        details.push(("Reason for amendment", reason.to_owned()));
    }
    body.table(&KEY_VALUE, &pairs(&details));

    sections(&mut body, note, 12.0);

    body.heading("Signature", 13.0);
    body.table(
        &KEY_VALUE,
        &pairs(&[
            ("Signed by", format!("user {}", signed.signed_by)),
            ("Signed at", when(signed.signed_at)),
            ("Content SHA-256", hex::encode(signed.content_sha256)),
        ]),
    );
    body.heading("Co-signature", 13.0);
    body.table(&KEY_VALUE, &pairs(&cosignature(signed)));

    body.heading("Amendment history", 13.0);
    if amendments.is_empty() {
        body.paragraph("No amendments.", Face::Regular, 10.0, 0.0);
    } else {
        let rows: Vec<Vec<String>> = amendments
            .iter()
            .enumerate()
            .map(|(i, amendment)| {
                vec![
                    (i + 1).to_string(),
                    when(amendment.state().signed_at),
                    format!("user {}", amendment.header().author_id),
                    amendment.content().reason().unwrap_or_default().to_owned(),
                ]
            })
            .collect();
        let width = layout::body_width();
        body.table(
            &[
                Column {
                    title: "#",
                    width: 20.0,
                },
                Column {
                    title: "Signed at",
                    width: 112.0,
                },
                Column {
                    title: "Author",
                    width: 200.0,
                },
                Column {
                    title: "Reason",
                    width: width - 332.0,
                },
            ],
            &rows,
        );
        for (i, amendment) in amendments.iter().enumerate() {
            let amendment_header = amendment.header();
            body.heading(
                &format!("Amendment {}: note {}", i + 1, amendment_header.id),
                12.0,
            );
            let amends = match amendment_header.kind {
                Kind::Amendment { amends } => amends,
                Kind::Original => header.id,
            };
            let mut rows = vec![
                ("Amends note", amends.to_string()),
                ("Author", format!("user {}", amendment_header.author_id)),
                ("Written", when(amendment_header.created_at)),
                ("Signed by", format!("user {}", amendment.state().signed_by)),
                ("Signed at", when(amendment.state().signed_at)),
                (
                    "Content SHA-256",
                    hex::encode(amendment.state().content_sha256),
                ),
            ];
            rows.extend(cosignature(amendment.state()));
            rows.push((
                "Reason",
                amendment.content().reason().unwrap_or_default().to_owned(),
            ));
            body.table(&KEY_VALUE, &pairs(&rows));
            sections(&mut body, amendment, 11.0);
        }
    }

    let (bytes, n_pages) = layout::write(
        &Header { lines: page_header },
        body,
        &format!("Signed note {}", header.id),
        // The hash's head: enough to match the signature block, short enough to
        // leave room for the page number.
        &format!(
            "Note {} \u{b7} content SHA-256 {}\u{2026}",
            header.id,
            &hex::encode(signed.content_sha256)[..16]
        ),
    );
    RenderedPdf {
        sha256: Sha256::digest(&bytes).into(),
        bytes,
        n_pages,
    }
}

#[cfg(test)]
mod tests {
    use kernel::UserId;
    use uuid::Uuid;

    use super::*;
    use crate::content::Content;
    use crate::note::{Cosignature, Header, NoteId};
    use crate::template::Template;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn signed(id: u128, content: Content, kind: Kind) -> Note<Signed> {
        let header = Header {
            id: NoteId::new_unchecked(Uuid::from_u128(id)),
            patient_id: PatientId::new_unchecked(Uuid::from_u128(7)),
            author_id: UserId::new_unchecked(Uuid::from_u128(8)),
            encounter_id: None,
            appointment_id: Some(Uuid::from_u128(9)),
            template: Template::find("soap", 1).unwrap(),
            kind,
            version: 1,
            service_at: at(1_795_000_000),
            created_at: at(1_795_000_100),
            updated_at: at(1_795_000_200),
        };
        let state = Signed {
            signed_by: header.author_id,
            signed_at: at(1_795_000_200),
            content_sha256: content.sha256(),
            cosign_required: true,
            cosignature: Some(Cosignature {
                by: UserId::new_unchecked(Uuid::from_u128(10)),
                at: at(1_795_000_300),
            }),
        };
        Note::assemble(header, content, state)
    }

    fn soap(plan: &str) -> Content {
        Content::from_sections([
            ("subjective", "Reports better sleep."),
            ("objective", "Calm, oriented."),
            ("assessment", "Improving."),
            ("plan", plan),
        ])
    }

    fn text_of(pdf: &RenderedPdf) -> String {
        String::from_utf8_lossy(&pdf.bytes).into_owned()
    }

    #[test]
    fn the_same_note_renders_to_the_same_bytes_and_another_note_does_not() {
        let note = signed(1, soap("Weekly sessions."), Kind::Original);
        let identifiers = Identifiers::pseudonym(note.header().patient_id);
        let first = render(&note, &[], &identifiers);
        let second = render(&note, &[], &identifiers);
        assert_eq!(first.bytes, second.bytes);
        assert_eq!(first.sha256, second.sha256);
        assert!(first.bytes.starts_with(b"%PDF-"));

        let other = signed(1, soap("Fortnightly sessions."), Kind::Original);
        assert_ne!(render(&other, &[], &identifiers).sha256, first.sha256);
        let other_id = signed(2, soap("Weekly sessions."), Kind::Original);
        assert_ne!(render(&other_id, &[], &identifiers).sha256, first.sha256);
    }

    #[test]
    fn a_short_note_is_one_page_and_a_long_one_numbers_every_page_of_the_total() {
        let note = signed(1, soap("Weekly sessions."), Kind::Original);
        let identifiers = Identifiers::pseudonym(note.header().patient_id);
        let short = render(&note, &[], &identifiers);
        assert_eq!(short.n_pages, 1);
        assert!(text_of(&short).contains("(Page 1 of 1)"));

        let long_plan = (1..=400)
            .map(|i| format!("Step {i}: practise the agreed coping skill and record it daily."))
            .collect::<Vec<_>>()
            .join("\n");
        let long = render(
            &signed(1, soap(&long_plan), Kind::Original),
            &[],
            &identifiers,
        );
        assert!(long.n_pages > 3, "{long:?}");
        let text = text_of(&long);
        for page in 1..=long.n_pages {
            let label = format!("(Page {page} of {})", long.n_pages);
            assert_eq!(text.matches(&label).count(), 1, "{label}");
        }
        assert!(!text.contains(&format!("Page {} of", long.n_pages + 1)));
        // The header is on every page.
        let pseudonym = format!("(Patient {})", note.header().patient_id);
        assert_eq!(text.matches(&pseudonym).count(), long.n_pages);
        // Every line of the plan made it, once.
        assert_eq!(text.matches("(Step 400: practise").count(), 1);
    }

    #[test]
    fn only_the_identifiers_given_are_printed_and_characters_outside_winansi_are_replaced() {
        let note = signed(
            1,
            soap("Caf\u{e9} \u{2014} \u{65e5}\u{672c} plan."),
            Kind::Original,
        );
        let pseudonym_only = text_of(&render(
            &note,
            &[],
            &Identifiers::pseudonym(note.header().patient_id),
        ));
        assert!(!pseudonym_only.contains("Record number"));
        assert!(!pseudonym_only.contains("Date of birth"));
        // é and the em dash are WinAnsi (a hex string in the file); the CJK is not.
        let expected = hex::encode(b"Caf\xe9 \x97 ?? plan.");
        assert!(
            pseudonym_only.contains(&format!("<{expected}>"))
                || pseudonym_only.contains(&format!("<{}>", expected.to_uppercase())),
            "WinAnsi text expected"
        );

        let all = text_of(&render(
            &note,
            &[],
            &Identifiers {
                pseudonym: note.header().patient_id,
                record_number: Some("MRN-0042".to_owned()),
                name: Some("Ada Lovelace".to_owned()),
                birth_date: Some(Date::from_calendar_date(1990, time::Month::March, 4).unwrap()),
            },
        ));
        assert!(all.contains("Record number: MRN-0042"));
        assert!(all.contains("Name: Ada Lovelace"));
        assert!(all.contains("Date of birth: 1990-03-04"));
    }

    #[test]
    fn amendments_are_listed_with_their_reason_and_point_at_the_original() {
        let note = signed(1, soap("Weekly sessions."), Kind::Original);
        let amendment = signed(
            2,
            soap("Fortnightly sessions.").with_reason("Frequency agreed with the patient."),
            Kind::Amendment { amends: note.id() },
        );
        let text = text_of(&render(
            &note,
            std::slice::from_ref(&amendment),
            &Identifiers::pseudonym(note.header().patient_id),
        ));
        assert!(text.contains("(Amendment history)"));
        assert!(text.contains("Frequency agreed with the patient."));
        assert!(text.contains(&format!("(Amendment 1: note {})", amendment.id())));
        assert!(text.contains(&format!("({})", note.id())));
        assert!(text.contains("(Fortnightly sessions.)"));
    }
}

//! `tenet hl7 parse` and `tenet hl7 send`: HL7 v2 tools for an operator, with no
//! database.
//!
//! `parse` prints a message file (or each message of a batch file) as a tree whose
//! lines are named by `hl7::Path` syntax (`PID-3(2).4.1`), or as JSON. `send` is an
//! MLLP client: one connection, one message at a time, each waiting for its ACK.
//!
//! Messages are PHI. Printing them on the operator's own terminal is the point of
//! `parse`, but nothing here may log a field's contents: logs carry counts, control
//! ids and ACK codes only. Parse errors name positions, never contents.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ::hl7::batch::{self, BATCH_BYTES_MAX};
use ::hl7::mllp::MllpCodec;
use ::hl7::{
    Component, Field, LineEndings, Message, ParseError, ParseWarning, Repetition, SegmentId,
};
use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::cli::Hl7Command;
use crate::output::{say, tell};

/// `send` shows a progress bar when it sends more messages than this.
const PROGRESS_BAR_MESSAGES_MIN: usize = 5;

pub async fn run(command: Hl7Command) -> anyhow::Result<ExitCode> {
    match command {
        Hl7Command::Parse { file, json } => parse(&file, json),
        Hl7Command::Send {
            to,
            timeout_secs,
            files,
        } => send(&to, Duration::from_secs(timeout_secs), &files).await,
    }
}

/// Reads a file (or standard input for `-`), refusing more than a batch file may hold.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = u64::try_from(BATCH_BYTES_MAX).unwrap_or(u64::MAX) + 1;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
    }
    if bytes.len() > BATCH_BYTES_MAX {
        bail!(
            "{} is larger than the limit of {BATCH_BYTES_MAX} bytes",
            shown(path)
        );
    }
    Ok(bytes)
}

fn shown(path: &Path) -> Cow<'_, str> {
    if path == Path::new("-") {
        Cow::Borrowed("standard input")
    } else {
        path.to_string_lossy()
    }
}

/// The messages of a file: one message, messages one after another, or a batch file
/// (FHS/BHS). A file that is none of these is taken as one message, so that its
/// parse error says where it goes wrong. The flag says whether the file holds
/// anything but a single message.
fn split(bytes: &[u8]) -> anyhow::Result<(Vec<&[u8]>, bool)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match batch::split(bytes) {
        Ok(batch) => {
            let several =
                batch.len() != 1 || batch.n_batches() > 0 || batch.file_header().is_some();
            Ok((batch.into_messages(), several))
        }
        Err(error) => {
            let first = bytes
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .map_or(&[][..], |i| &bytes[i..]);
            if first.starts_with(b"FHS") || first.starts_with(b"BHS") {
                Err(error).context("the batch file is malformed")
            } else {
                Ok((vec![bytes], false))
            }
        }
    }
}

/// The text of a parse error, with its location when the text does not already
/// say it. Neither holds field contents.
fn parse_error_text(error: &ParseError) -> String {
    let text = error.to_string();
    match error.location() {
        Some(location) if !text.contains(&location.to_string()) => {
            format!("{location}: {text}")
        }
        _ => text,
    }
}

fn parse(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read_input(path)?;
    let (messages, several) = split(&bytes).with_context(|| shown(path).into_owned())?;
    let n_messages = messages.len();
    let mut n_failed = 0;
    let mut trees = Vec::new();
    for (i, raw) in messages.iter().enumerate() {
        let name = format!("message {} of {n_messages}", i + 1);
        match Message::parse(raw) {
            Ok(message) if json => trees.push(message.to_json_tree()),
            Ok(message) => say(render_tree(&name, &message)),
            Err(error) => {
                n_failed += 1;
                let text = parse_error_text(&error);
                if json && several {
                    // Keeps each tree at its message's place in the array.
                    trees.push(serde_json::json!({ "error": text }));
                }
                tell(format!(
                    "error: {}: {name} does not parse: {text}",
                    shown(path)
                ));
            }
        }
    }
    if json {
        match trees.as_slice() {
            [] => {}
            [only] if !several => say(serde_json::to_string_pretty(only)?),
            _ => say(serde_json::to_string_pretty(&trees)?),
        }
    }
    tracing::debug!(n_messages, n_failed, "hl7 parse");
    if n_failed > 0 {
        bail!(
            "{}: {n_failed} of {n_messages} message(s) did not parse",
            shown(path)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The message as an indented tree, one value per line, each named by its path.
/// Only fields that are not empty are shown; a composite value is shown as written,
/// then its parts, decoded.
fn render_tree(name: &str, message: &Message<'_>) -> String {
    let msh = message.msh();
    let message_type = msh.message_type();
    let mut out = String::new();
    let _ = write!(
        out,
        "{name}: {}^{}, control id {}, {} segment(s), charset {}",
        message_type.code().unwrap_or_default(),
        message_type.trigger().unwrap_or_default(),
        msh.control_id().unwrap_or_default(),
        message.n_segments(),
        message.charset(),
    );
    for warning in message.warnings() {
        let _ = write!(out, "\n  warning: {}", warning_text(warning));
    }
    let mut n_by_id: HashMap<SegmentId, usize> = HashMap::new();
    for segment in message.segments() {
        *n_by_id.entry(segment.id()).or_default() += 1;
    }
    let mut seen_by_id: HashMap<SegmentId, usize> = HashMap::new();
    for segment in message.segments() {
        let id = segment.id();
        let occurrence = seen_by_id.entry(id).or_default();
        *occurrence += 1;
        // `OBX(3)` for the third OBX, as paths write it, when the id repeats.
        let label = if n_by_id.get(&id).is_some_and(|&n| n > 1) {
            format!("{id}({occurrence})")
        } else {
            id.to_string()
        };
        let _ = write!(out, "\n{label} (segment {})", segment.position());
        for (i, field) in segment.fields().enumerate() {
            let n = i + 1;
            if field.is_empty() {
                continue;
            }
            let path = format!("{label}-{n}");
            if id.is_header() && n <= 2 {
                // The separator and the encoding characters: never split or decoded.
                line(&mut out, 1, &path, field.as_str());
            } else {
                render_field(&mut out, &path, field);
            }
        }
    }
    out
}

fn render_field(out: &mut String, path: &str, field: Field<'_>) {
    let repetitions: Vec<Repetition<'_>> = field.repetitions().collect();
    match repetitions.as_slice() {
        [only] => render_repetition(out, 1, path, *only),
        _ => {
            line(out, 1, path, field.as_str());
            for (i, repetition) in repetitions.iter().enumerate() {
                if !repetition.is_empty() {
                    render_repetition(out, 2, &format!("{path}({})", i + 1), *repetition);
                }
            }
        }
    }
}

fn render_repetition(out: &mut String, depth: usize, path: &str, repetition: Repetition<'_>) {
    let components: Vec<Component<'_>> = repetition.components().collect();
    match components.as_slice() {
        [only] => render_component(out, depth, path, *only),
        _ => {
            line(out, depth, path, repetition.as_str());
            for (i, component) in components.iter().enumerate() {
                if !component.is_empty() {
                    render_component(out, depth + 1, &format!("{path}.{}", i + 1), *component);
                }
            }
        }
    }
}

fn render_component(out: &mut String, depth: usize, path: &str, component: Component<'_>) {
    let mut subcomponents = component.subcomponents();
    match (subcomponents.next(), subcomponents.next()) {
        (Some(only), None) => line(out, depth, path, &only.decoded()),
        _ => {
            line(out, depth, path, component.as_str());
            for (i, subcomponent) in component.subcomponents().enumerate() {
                if !subcomponent.is_empty() {
                    let path = format!("{path}.{}", i + 1);
                    line(out, depth + 1, &path, &subcomponent.decoded());
                }
            }
        }
    }
}

/// One line of the tree: the path, then the value with control characters (a
/// decoded `\.br\`, say) shown as escapes so that one value stays on one line.
fn line(out: &mut String, depth: usize, path: &str, value: &str) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
    let _ = write!(out, "{path:<12} ");
    for c in value.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

fn warning_text(warning: &ParseWarning) -> String {
    match warning {
        ParseWarning::NonStandardSegmentTerminator(endings) => {
            let endings = match endings {
                LineEndings::Cr => "CR",
                LineEndings::Lf => "LF",
                LineEndings::CrLf => "CR LF",
                LineEndings::Mixed => "mixed",
            };
            format!("segments end with {endings} line endings, where the standard says CR")
        }
        ParseWarning::EmptySegmentsSkipped { n_segments } => {
            format!("{n_segments} empty line(s) between segments skipped")
        }
        ParseWarning::ByteOrderMarkSkipped => "a UTF-8 byte order mark skipped".to_owned(),
    }
}

/// One message to send: where it came from, its bytes and control id.
struct Outgoing {
    source: String,
    bytes: Vec<u8>,
    control_id: String,
}

async fn send(to: &str, timeout: Duration, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // Everything is read and parsed before the first byte goes out, so that a bad
    // file stops the run before anything is sent.
    let mut outgoing = Vec::new();
    let mut n_unparsed = 0;
    for path in files {
        let bytes = read_input(path)?;
        let (messages, several) = split(&bytes).with_context(|| shown(path).into_owned())?;
        let n_messages = messages.len();
        for (i, raw) in messages.into_iter().enumerate() {
            let source = if !several {
                shown(path).into_owned()
            } else {
                format!("{} message {} of {n_messages}", shown(path), i + 1)
            };
            match Message::parse(raw) {
                Ok(message) => outgoing.push(Outgoing {
                    control_id: message.msh().control_id().unwrap_or_default().into_owned(),
                    bytes: raw.to_vec(),
                    source,
                }),
                Err(error) => {
                    n_unparsed += 1;
                    tell(format!(
                        "error: {source} does not parse: {}",
                        parse_error_text(&error)
                    ));
                }
            }
        }
    }
    if n_unparsed > 0 {
        bail!("{n_unparsed} message(s) do not parse; nothing was sent");
    }

    let stream = tokio::time::timeout(timeout, TcpStream::connect(to))
        .await
        .map_err(|_| anyhow::anyhow!("no connection to {to} within {} s", timeout.as_secs()))?
        .with_context(|| format!("connecting to {to}"))?;
    let _ = stream.set_nodelay(true);
    let mut connection = Framed::new(stream, MllpCodec::new());

    let bar = if outgoing.len() > PROGRESS_BAR_MESSAGES_MIN {
        let bar = ProgressBar::new(outgoing.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    // Per message, whether an ACK other than AA/CA came for it (or none readable).
    let mut not_accepted = vec![false; outgoing.len()];
    // The messages sent so far, by control id: a second ACK for one of them (an
    // enhanced-mode application ACK after its CA) may arrive before the next one's.
    let mut sent: HashMap<&str, usize> = HashMap::new();
    for (i, message) in outgoing.iter().enumerate() {
        let acks = exchange(&mut connection, i, message, &sent, timeout)
            .await
            .inspect_err(|_| bar.finish_and_clear())
            .with_context(|| format!("{} (control id {})", message.source, message.control_id))?;
        sent.insert(&message.control_id, i);
        for ack in acks {
            if !ack.accepted {
                not_accepted[ack.message] = true;
            }
            bar.suspend(|| say(ack.line));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n_sent = outgoing.len();
    let n_not_accepted = not_accepted.iter().filter(|&&no| no).count();
    tracing::info!(n_sent, n_not_accepted, "hl7 send finished");
    if n_not_accepted > 0 {
        say(format!(
            "{n_not_accepted} of {n_sent} message(s) not accepted by {to}"
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One ACK as `send` prints it.
struct AckLine {
    /// The position of the message it answers.
    message: usize,
    /// AA or CA, for the control id expected.
    accepted: bool,
    line: String,
}

/// How many ACKs for earlier messages `send` skips while waiting for one message's.
const LATE_ACKS_MAX: usize = 1_000;

/// Sends the message at `position` and reads ACKs until its own: late ACKs for
/// earlier messages (`sent`), then its own, which is the last.
async fn exchange(
    connection: &mut Framed<TcpStream, MllpCodec>,
    position: usize,
    message: &Outgoing,
    sent: &HashMap<&str, usize>,
    timeout: Duration,
) -> anyhow::Result<Vec<AckLine>> {
    let secs = timeout.as_secs();
    let deadline = tokio::time::Instant::now() + timeout;
    tokio::time::timeout_at(deadline, connection.send(&message.bytes[..]))
        .await
        .map_err(|_| anyhow::anyhow!("could not send within {secs} s"))?
        .context("sending")?;
    let control_id = message.control_id.as_str();
    let mut acks = Vec::new();
    for _ in 0..=LATE_ACKS_MAX {
        let frame = tokio::time::timeout_at(deadline, connection.next())
            .await
            .map_err(|_| anyhow::anyhow!("timed out: no ACK within {secs} s"))?
            .context("the endpoint closed the connection without an ACK")?
            .context("reading the ACK")?;
        let ack = match read_ack(&frame) {
            Ok(ack) => ack,
            Err(problem) => {
                acks.push(AckLine {
                    message: position,
                    accepted: false,
                    line: format!("{control_id} ?? {problem}"),
                });
                return Ok(acks);
            }
        };
        tracing::debug!(
            control_id = ack.control_id,
            code = ack.code,
            "hl7 ACK received"
        );
        let accepted = matches!(ack.code.as_str(), "AA" | "CA");
        let mut line = format!("{} {}", ack.control_id, ack.code);
        if !accepted && !ack.diagnostics.is_empty() {
            let _ = write!(line, " {}", ack.diagnostics);
        }
        if ack.control_id != control_id
            && let Some(&earlier) = sent.get(ack.control_id.as_str())
        {
            line.push_str(" (a further ACK of an earlier message)");
            acks.push(AckLine {
                message: earlier,
                accepted,
                line,
            });
            continue;
        }
        if ack.control_id != control_id {
            line = format!("{control_id} ?? the ACK is for another control id: {line}");
        }
        acks.push(AckLine {
            message: position,
            accepted: accepted && ack.control_id == control_id,
            line,
        });
        return Ok(acks);
    }
    bail!("more than {LATE_ACKS_MAX} ACKs for earlier messages");
}

/// What `send` reads of an ACK.
struct Ack {
    /// MSA-2, the control id acknowledged.
    control_id: String,
    /// MSA-1.
    code: String,
    /// What it says went wrong, if anything.
    diagnostics: String,
}

/// Reads an ACK; `Err` says why the answer is not one.
fn read_ack(frame: &[u8]) -> Result<Ack, String> {
    let ack = Message::parse(frame).map_err(|error| {
        format!(
            "the answer is not an HL7 message: {}",
            parse_error_text(&error)
        )
    })?;
    let msa = ack
        .segment("MSA")
        .ok_or_else(|| "the answer has no MSA segment".to_owned())?;
    let text = |n: usize| {
        msa.field(n)
            .map(|field| field.decoded().into_owned())
            .unwrap_or_default()
    };
    Ok(Ack {
        control_id: text(2),
        code: text(1),
        diagnostics: diagnostics(&ack, &text(3)),
    })
}

/// What an ACK says went wrong: per ERR segment, its HL7 error code and text (ERR-3)
/// and its diagnostic (ERR-8), or the v2.3 ERR-1; else MSA-3.
fn diagnostics(ack: &Message<'_>, msa_text: &str) -> String {
    let mut parts = Vec::new();
    for err in ack.segments_by_id("ERR") {
        let component = |field: usize, n: usize| {
            err.field(field)
                .and_then(|f| f.component(n))
                .map(|c| c.decoded().into_owned())
                .unwrap_or_default()
        };
        let diagnostic = err
            .field(8)
            .map(|f| f.decoded().into_owned())
            .unwrap_or_default();
        let (code, description) = (component(3, 1), component(3, 2));
        let mut part = match (code.is_empty(), description.is_empty()) {
            (false, false) => format!("{code} {description}"),
            (false, true) => code,
            (true, false) => description,
            // Before v2.5, ERR-1 holds the location and, in its 4th component, the code.
            (true, true) => err
                .field(1)
                .and_then(|f| f.component(4))
                .map(|c| c.as_str().replace(ack.delimiters().subcomponent(), " "))
                .unwrap_or_default(),
        };
        if !diagnostic.is_empty() {
            if !part.is_empty() {
                part.push_str(": ");
            }
            part.push_str(&diagnostic);
        }
        if !part.is_empty() {
            parts.push(part);
        }
    }
    if parts.is_empty() && !msa_text.is_empty() {
        parts.push(msa_text.to_owned());
    }
    parts.join("; ")
}

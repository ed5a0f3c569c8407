//! `Message::to_json_tree()`: the parsed tree as JSON, for operator tools
//! such as `tenet hl7 parse --json` (behind the `serde` feature).
//!
//! The tree holds every value of the message, so it is PHI: it must never be
//! logged, only shown to an operator who may read the message.

use serde_json::{Map, Value as Json};

use crate::message::Message;
use crate::segment::{Component, Field, Repetition};

impl Message<'_> {
    /// The message as a JSON tree:
    ///
    /// ```json
    /// {"delimiters": "|^~\\&", "charset": "UNICODE UTF-8", "line_endings": "cr",
    ///  "segments": [{"id": "PID", "fields": {"3": [["123", "", "", ["HOSP", "1.2.3", "ISO"]]], "8": "F"}}]}
    /// ```
    ///
    /// Fields are keyed by their number and empty ones are left out. A value
    /// with one part is a string (decoded); otherwise it is an array of its
    /// repetitions, each a string or an array of components, each a string or
    /// an array of sub-components. MSH-1 and MSH-2 are strings, as written.
    pub fn to_json_tree(&self) -> Json {
        let segments: Vec<Json> = self
            .segments()
            .map(|segment| {
                let mut fields = Map::new();
                for (i, field) in segment.fields().enumerate() {
                    if !field.is_empty() {
                        fields.insert((i + 1).to_string(), field_json(field));
                    }
                }
                let mut object = Map::new();
                object.insert("id".into(), Json::String(segment.id().to_string()));
                object.insert("fields".into(), Json::Object(fields));
                Json::Object(object)
            })
            .collect();
        let mut root = Map::new();
        root.insert(
            "delimiters".into(),
            Json::String(self.delimiters().to_string()),
        );
        root.insert(
            "charset".into(),
            Json::String(self.charset().hl7_name().into()),
        );
        root.insert(
            "line_endings".into(),
            Json::String(
                match self.line_endings() {
                    crate::LineEndings::Cr => "cr",
                    crate::LineEndings::Lf => "lf",
                    crate::LineEndings::CrLf => "crlf",
                    crate::LineEndings::Mixed => "mixed",
                }
                .into(),
            ),
        );
        root.insert("segments".into(), Json::Array(segments));
        Json::Object(root)
    }
}

fn field_json(field: Field<'_>) -> Json {
    let repetitions: Vec<Repetition<'_>> = field.repetitions().collect();
    match repetitions.as_slice() {
        [only] => repetition_json(*only),
        _ => Json::Array(repetitions.into_iter().map(repetition_json).collect()),
    }
}

fn repetition_json(repetition: Repetition<'_>) -> Json {
    let components: Vec<Component<'_>> = repetition.components().collect();
    match components.as_slice() {
        [only] => component_json(*only),
        _ => Json::Array(components.into_iter().map(component_json).collect()),
    }
}

fn component_json(component: Component<'_>) -> Json {
    let mut subcomponents = component.subcomponents();
    match (subcomponents.next(), subcomponents.next()) {
        (Some(only), None) => Json::String(only.decoded().into_owned()),
        _ => Json::Array(
            component
                .subcomponents()
                .map(|s| Json::String(s.decoded().into_owned()))
                .collect(),
        ),
    }
}

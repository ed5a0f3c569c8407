//! Observations: results recorded on a patient (from HL7 ORU^R01 today), each with
//! whether it is critical — flagged `HH`, `LL` or `AA` by the sender, or outside the
//! tenant's configured critical range for its code.
//!
//! Free-text values are not stored here (they may name people); an observation keeps
//! its source (an ingest message id and position) instead, where the text stays
//! sealed.

use db::TenantTx;
use kernel::PatientId;
use platform::outbox::{Event, Outbox};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::critical_range;

/// An observation's status (`clinical.observation_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservationStatus {
    Registered,
    Preliminary,
    Final,
    Corrected,
    Cancelled,
    EnteredInError,
    Unknown,
}

impl ObservationStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Preliminary => "preliminary",
            Self::Final => "final",
            Self::Corrected => "corrected",
            Self::Cancelled => "cancelled",
            Self::EnteredInError => "entered_in_error",
            Self::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "registered" => Self::Registered,
            "preliminary" => Self::Preliminary,
            "final" => Self::Final,
            "corrected" => Self::Corrected,
            "cancelled" => Self::Cancelled,
            "entered_in_error" => Self::EnteredInError,
            "unknown" => Self::Unknown,
            other => panic!("BUG: clinical.observation_status has unknown value {other}"),
        }
    }
}

/// An observation's value.
#[derive(Clone, PartialEq)]
pub enum ObservationValue {
    /// A number, kept as the sender wrote it (`5.10`), checked to be a finite decimal.
    Numeric(String),
    /// A code from a coded value (CE/CWE).
    Coded(String),
    /// Free text: not stored here; read it from the source.
    Text,
    None,
}

impl std::fmt::Debug for ObservationValue {
    // A result value is health information: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Numeric(_) => "Numeric([redacted])",
            Self::Coded(_) => "Coded([redacted])",
            Self::Text => "Text",
            Self::None => "None",
        })
    }
}

impl ObservationValue {
    fn kind(&self) -> &'static str {
        match self {
            Self::Numeric(_) => "numeric",
            Self::Coded(_) => "coded",
            Self::Text => "text",
            Self::None => "none",
        }
    }

    /// The number, for a numeric value.
    pub fn number(&self) -> Option<f64> {
        match self {
            Self::Numeric(text) => text.parse::<f64>().ok().filter(|v| v.is_finite()),
            _ => None,
        }
    }
}

/// Whether `text` is a decimal PostgreSQL's `numeric` reads and we would compare:
/// an optional sign, digits, an optional fraction.
pub fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && digits.len() <= 40
}

/// An observation to record.
#[derive(Debug, Clone)]
pub struct NewObservation {
    pub code_system: String,
    pub code: String,
    pub value: ObservationValue,
    pub units: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flags: Vec<String>,
    pub status: ObservationStatus,
    pub effective_at: Option<OffsetDateTime>,
    /// The source message and position; the same source is recorded once.
    pub source: Option<(Uuid, i32)>,
}

/// The abnormal flags (HL7 table 0078) that mean a critical result.
pub const CRITICAL_FLAGS: &[&str] = &["HH", "LL", "AA"];

/// Why an observation is critical, if it is: a critical flag, else a value outside the
/// code's critical range.
pub fn critical_reason(
    observation: &NewObservation,
    range: Option<&critical_range::CriticalRange>,
) -> Option<String> {
    if let Some(flag) = observation
        .abnormal_flags
        .iter()
        .find(|flag| CRITICAL_FLAGS.contains(&flag.as_str()))
    {
        return Some(format!("flag:{flag}"));
    }
    let value = observation.value.number()?;
    range
        .filter(|range| range.is_critical(value))
        .map(|_| "range".to_owned())
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub observation_id: Uuid,
    pub critical: bool,
    /// False when its source was recorded before (nothing was written).
    pub new: bool,
}

/// Records an observation on `patient_id` and announces `observation.recorded` with
/// whether it is critical. A source already recorded is not recorded again.
pub async fn record(
    tx: &mut TenantTx,
    patient_id: PatientId,
    observation: &NewObservation,
) -> Result<Recorded, sqlx::Error> {
    assert!(
        !matches!(&observation.value, ObservationValue::Numeric(text) if !is_decimal(text)),
        "BUG: a numeric observation value must be checked with is_decimal first"
    );
    let range = critical_range::get(tx, &observation.code_system, &observation.code).await?;
    let reason = critical_reason(observation, range.as_ref());
    let observation_id = Uuid::now_v7();
    let (numeric, coded) = match &observation.value {
        ObservationValue::Numeric(text) => (Some(text.as_str()), None),
        ObservationValue::Coded(code) => (None, Some(code.as_str())),
        ObservationValue::Text | ObservationValue::None => (None, None),
    };
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO clinical.observations (tenant_id, id, patient_id, code_system, code, value_kind,
             value_numeric, value_code, units, reference_range, abnormal_flags, status, effective_at,
             critical, critical_reason, source_message_id, source_index)
         VALUES ($1, $2, $3, $4, $5, $6::clinical.observation_value_kind, $7::numeric, $8, $9, $10, $11,
             $12::clinical.observation_status, $13, $14, $15, $16, $17)
         ON CONFLICT (tenant_id, source_message_id, source_index) DO NOTHING
         RETURNING id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(observation_id)
    .bind(patient_id.as_uuid())
    .bind(&observation.code_system)
    .bind(&observation.code)
    .bind(observation.value.kind())
    .bind(numeric)
    .bind(coded)
    .bind(&observation.units)
    .bind(&observation.reference_range)
    .bind(&observation.abnormal_flags)
    .bind(observation.status.as_str())
    .bind(observation.effective_at)
    .bind(reason.is_some())
    .bind(&reason)
    .bind(observation.source.map(|(id, _)| id))
    .bind(observation.source.map(|(_, index)| index))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(observation_id) = inserted else {
        let (source_id, index) = observation
            .source
            .expect("BUG: only a sourced observation conflicts");
        let (existing, critical): (Uuid, bool) = sqlx::query_as(
            "SELECT id, critical FROM clinical.observations
             WHERE tenant_id = $1 AND source_message_id = $2 AND source_index = $3",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(source_id)
        .bind(index)
        .fetch_one(&mut **tx)
        .await?;
        return Ok(Recorded {
            observation_id: existing,
            critical,
            new: false,
        });
    };
    platform::outbox::emit(
        tx,
        Outbox::Clinical,
        Event {
            event_type: "observation.recorded",
            event_version: 1,
            aggregate_type: "observation",
            aggregate_id: observation_id,
            // Codes and ids only: the value stays in the table, behind the tenant's rows.
            payload: serde_json::json!({
                "observation_id": observation_id,
                "patient_id": patient_id,
                "code_system": observation.code_system,
                "code": observation.code,
                "status": observation.status.as_str(),
                "critical": reason.is_some(),
                "critical_reason": reason,
            }),
        },
    )
    .await?;
    Ok(Recorded {
        observation_id,
        critical: reason.is_some(),
        new: true,
    })
}

/// An observation as stored.
#[derive(Debug, Clone)]
pub struct Observation {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub code_system: String,
    pub code: String,
    pub value: ObservationValue,
    pub units: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flags: Vec<String>,
    pub status: ObservationStatus,
    pub effective_at: Option<OffsetDateTime>,
    pub critical: bool,
    pub critical_reason: Option<String>,
    pub source: Option<(Uuid, i32)>,
}

type ObservationRow = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
    String,
    Option<OffsetDateTime>,
    bool,
    Option<String>,
    Option<Uuid>,
    Option<i32>,
);

/// How many observations one page lists at most.
pub const PAGE_LEN_MAX: i64 = 500;

/// A patient's observations, oldest first (by effective time, then id).
pub async fn of_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
    limit: i64,
) -> Result<Vec<Observation>, sqlx::Error> {
    let rows: Vec<ObservationRow> = sqlx::query_as(
        "SELECT id, code_system, code, value_kind::text, value_numeric::text, value_code, units,
             reference_range, abnormal_flags, status::text, effective_at, critical, critical_reason,
             source_message_id, source_index
         FROM clinical.observations WHERE tenant_id = $1 AND patient_id = $2
         ORDER BY effective_at NULLS FIRST, id LIMIT $3",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(limit.clamp(1, PAGE_LEN_MAX))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                code_system,
                code,
                kind,
                numeric,
                coded,
                units,
                reference_range,
                abnormal_flags,
                status,
                effective_at,
                critical,
                critical_reason,
                source_id,
                source_index,
            )| Observation {
                id,
                patient_id,
                code_system,
                code,
                value: match kind.as_str() {
                    "numeric" => ObservationValue::Numeric(numeric.unwrap_or_default()),
                    "coded" => ObservationValue::Coded(coded.unwrap_or_default()),
                    "text" => ObservationValue::Text,
                    _ => ObservationValue::None,
                },
                units,
                reference_range,
                abnormal_flags,
                status: ObservationStatus::parse(&status),
                effective_at,
                critical,
                critical_reason,
                source: source_id.zip(source_index),
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::critical_range::CriticalRange;

    fn potassium(value: &str, flags: &[&str]) -> NewObservation {
        NewObservation {
            code_system: "LN".to_owned(),
            code: "2823-3".to_owned(),
            value: ObservationValue::Numeric(value.to_owned()),
            units: Some("mmol/L".to_owned()),
            reference_range: Some("3.5-5.1".to_owned()),
            abnormal_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            status: ObservationStatus::Final,
            effective_at: None,
            source: None,
        }
    }

    #[test]
    fn a_critical_flag_makes_a_result_critical_whatever_its_value() {
        assert_eq!(
            critical_reason(&potassium("4.0", &["HH"]), None).as_deref(),
            Some("flag:HH")
        );
        assert_eq!(critical_reason(&potassium("6.0", &["H"]), None), None);
    }

    #[test]
    fn a_value_outside_the_configured_range_is_critical_without_a_flag() {
        let range = CriticalRange {
            code_system: "LN".to_owned(),
            code: "2823-3".to_owned(),
            low: Some(2.5),
            high: Some(6.5),
        };
        assert_eq!(
            critical_reason(&potassium("6.8", &[]), Some(&range)).as_deref(),
            Some("range")
        );
        assert_eq!(
            critical_reason(&potassium("2.4", &["L"]), Some(&range)).as_deref(),
            Some("range")
        );
        assert_eq!(critical_reason(&potassium("6.5", &[]), Some(&range)), None);
    }

    #[test]
    fn decimals_are_told_from_other_text() {
        for good in ["5", "5.10", "-0.5", "+12", ".5", "7."] {
            assert!(is_decimal(good), "{good}");
        }
        for bad in ["", ".", "-", "5e3", "NaN", "1,5", ">10", "5 mg"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }
}

//! `tenet consents grant|revoke|list|show` and `tenet releases record|list|report`:
//! a tenant's consents and its accounting of disclosures, for operators. Each runs in
//! a transaction of the tenant as `operator`, audited like the API. Recipients and
//! release descriptions are PHI: they are sealed on the way in and never printed, and
//! `-` takes them from standard input rather than the command line, which every user
//! of the machine can read in the process list.

use std::process::ExitCode;

use compliance::consent::{self, Consent, ConsentId};
use compliance::release::{self, Release};
use compliance::{NewConsent, NewRelease, Purpose, Recipient, RevocationReason, Scope};
use identity::keyring::Keyring;
use kernel::PatientId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::tenant_tx;
use crate::cli::{ConsentsCommand, Global, ReleasesCommand};
use crate::output::say;
use crate::settings;

/// The most a `-` argument reads from standard input.
const STDIN_LEN_MAX: u64 = 64 * 1024;

/// All of standard input, bounded, without its trailing line break: the value of a PHI
/// argument given as `-`. A value on the command line is visible to every user of the
/// machine (`ps`); one on standard input is not. Read before any connection is opened.
fn from_stdin(flag: &str, one_line: bool) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(STDIN_LEN_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|err| anyhow::anyhow!("reading {flag} from standard input: {err}"))?;
    anyhow::ensure!(
        text.len() as u64 <= STDIN_LEN_MAX,
        "{flag} -: standard input holds more than {STDIN_LEN_MAX} bytes"
    );
    let text = text.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!text.is_empty(), "{flag} -: standard input is empty");
    anyhow::ensure!(
        !one_line || !text.contains(['\r', '\n']),
        "{flag} -: standard input must hold one line"
    );
    Ok(text.to_owned())
}

/// Replaces a `-` in `value` by what standard input holds.
fn resolve(value: &mut String, flag: &str, one_line: bool) -> anyhow::Result<()> {
    if value == "-" {
        *value = from_stdin(flag, one_line)?;
    }
    Ok(())
}

/// Reads the `-` arguments of a grant.
fn consents_stdin(command: &mut ConsentsCommand) -> anyhow::Result<()> {
    if let ConsentsCommand::Grant {
        recipient: Some(recipient),
        ..
    } = command
    {
        resolve(recipient, "--recipient", true)?;
    }
    Ok(())
}

/// Reads the `-` arguments of a release: at most one of them.
fn releases_stdin(command: &mut ReleasesCommand) -> anyhow::Result<()> {
    if let ReleasesCommand::Record {
        recipient,
        description,
        ..
    } = command
    {
        anyhow::ensure!(
            !(recipient == "-" && description.as_deref() == Some("-")),
            "only one of --recipient and --description can be `-` (read from standard input)"
        );
        resolve(recipient, "--recipient", true)?;
        if let Some(description) = description {
            resolve(description, "--description", false)?;
        }
    }
    Ok(())
}

fn parse_time(text: &str, flag: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| anyhow::anyhow!("{flag} must be an RFC 3339 time"))
}

pub async fn consents(global: &Global, mut command: ConsentsCommand) -> anyhow::Result<ExitCode> {
    consents_stdin(&mut command)?;
    let keyring = Keyring::new(settings::master_key(global)?);
    super::with_pools(global, async |_owner, app| match command {
        ConsentsCommand::Grant {
            tenant,
            patient,
            scope,
            recipient,
            valid_until,
            evidence_document,
        } => {
            let scope = Scope::parse(&scope).ok_or_else(|| {
                anyhow::anyhow!(
                    "--scope must be treatment, telehealth, release_of_information or research"
                )
            })?;
            let recipient = recipient.as_deref().map(Recipient::parse).transpose()?;
            let valid_until = valid_until
                .as_deref()
                .map(|text| parse_time(text, "--valid-until"))
                .transpose()?;
            let mut tx = tenant_tx(app, tenant).await?;
            let consent = consent::grant(
                &mut tx,
                &keyring,
                NewConsent {
                    patient_id: PatientId::new_unchecked(patient),
                    scope,
                    recipient,
                    granted_at: None,
                    valid_until,
                    evidence_document_id: evidence_document,
                },
            )
            .await?;
            tx.commit().await?;
            say(consent.id.to_string());
            Ok(ExitCode::SUCCESS)
        }
        ConsentsCommand::Revoke {
            tenant,
            consent,
            reason,
        } => {
            let reason = RevocationReason::parse(&reason).ok_or_else(|| {
                anyhow::anyhow!(
                    "--reason must be patient_request, entered_in_error, superseded or other"
                )
            })?;
            let mut tx = tenant_tx(app, tenant).await?;
            let revoked =
                consent::revoke(&mut tx, &keyring, ConsentId::new_unchecked(consent), reason)
                    .await?;
            tx.commit().await?;
            say(line(&revoked));
            Ok(ExitCode::SUCCESS)
        }
        ConsentsCommand::List { tenant, patient } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let consents =
                consent::for_patient(&mut tx, &keyring, PatientId::new_unchecked(patient)).await?;
            tx.commit().await?;
            if consents.is_empty() {
                say("no consents for this patient");
            }
            for consent in &consents {
                say(line(consent));
            }
            Ok(ExitCode::SUCCESS)
        }
        ConsentsCommand::Show { tenant, consent } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let consent =
                consent::read(&mut tx, &keyring, ConsentId::new_unchecked(consent)).await?;
            tx.commit().await?;
            say(line(&consent));
            say(format!(
                "patient {} recorded by {} evidence {}",
                consent.patient_id,
                consent.recorded_by,
                consent
                    .evidence_document_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            ));
            if let Some(revocation) = &consent.revocation {
                say(format!(
                    "revoked {} by {} ({})",
                    revocation.at,
                    revocation.by,
                    revocation.reason.as_str()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

pub async fn releases(global: &Global, mut command: ReleasesCommand) -> anyhow::Result<ExitCode> {
    releases_stdin(&mut command)?;
    let keyring = Keyring::new(settings::master_key(global)?);
    super::with_pools(global, async |_owner, app| match command {
        ReleasesCommand::Record {
            tenant,
            patient,
            recipient,
            purpose,
            documents,
            description,
        } => {
            let purpose = Purpose::parse(&purpose).ok_or_else(|| {
                anyhow::anyhow!(
                    "--purpose must be treatment, payment, healthcare_operations, patient_request, legal, public_health, research or other"
                )
            })?;
            let mut tx = tenant_tx(app, tenant).await?;
            let release = release::record(
                &mut tx,
                &keyring,
                NewRelease {
                    patient_id: PatientId::new_unchecked(patient),
                    recipient: Recipient::parse(&recipient)?,
                    purpose,
                    document_ids: documents,
                    description,
                    released_at: None,
                },
            )
            .await?;
            tx.commit().await?;
            say(release.id.to_string());
            Ok(ExitCode::SUCCESS)
        }
        ReleasesCommand::List { tenant, patient } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let releases =
                release::for_patient(&mut tx, &keyring, PatientId::new_unchecked(patient)).await?;
            tx.commit().await?;
            if releases.is_empty() {
                say("no releases for this patient");
            }
            for release in &releases {
                say(release_line(release));
            }
            Ok(ExitCode::SUCCESS)
        }
        ReleasesCommand::Report { tenant, from, to } => {
            let from = parse_time(&from, "--from")?;
            let to = parse_time(&to, "--to")?;
            anyhow::ensure!(from < to, "--from must be before --to");
            let mut tx = tenant_tx(app, tenant).await?;
            let releases = release::report(&mut tx, None, from, to).await?;
            tx.commit().await?;
            for release in &releases {
                say(release_line(release));
            }
            say(format!("{} releases", releases.len()));
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

fn line(consent: &Consent) -> String {
    format!(
        "{} {:<22} {:<7} granted {} until {}{}",
        consent.id,
        consent.scope.as_str(),
        consent.status().as_str(),
        consent.granted_at,
        consent
            .valid_until
            .map_or_else(|| "-".to_owned(), |at| at.to_string()),
        if consent.recipient.is_some() {
            " recipient [sealed]"
        } else {
            ""
        },
    )
}

fn release_line(release: &Release) -> String {
    format!(
        "{} patient {} {:<21} {} documents consent {} released {} by {}",
        release.id,
        release.patient_id,
        release.purpose.as_str(),
        release.document_ids.len(),
        release.consent_id,
        release.released_at,
        release.released_by,
    )
}

//! `tenet consents …` and `tenet releases …`: an operator grants and revokes
//! consents; a release is refused (exit non-zero, nothing recorded) without a
//! release-of-information consent for its recipient, recorded with one, listed and
//! reported — and the recipient is never printed.

use kernel::{PatientId, TenantId};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::{Tenet, single_line};

const CANARY: &str = "Zqxclirecipient Family Law";

#[tokio::test]
async fn a_release_is_refused_without_consent_then_recorded_listed_and_reported_without_the_recipient()
 {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "North Clinic"]).await.ok()).to_owned();
    let tenant_id = TenantId::new_unchecked(tenant.parse().unwrap());
    let mut tx = db::TenantTx::begin_as(&tenet.db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let patient_id = clinical::patient::insert(&mut tx, PatientId::generate())
        .await
        .unwrap()
        .id
        .to_string();
    tx.commit().await.unwrap();
    // The released document: one the operator stored for this patient.
    let file = tenet.home.path().join("summary.txt");
    std::fs::write(&file, "Discharge summary\n").unwrap();
    let uploaded = tenet
        .run(&[
            "documents",
            "upload",
            "--tenant",
            &tenant,
            "--patient",
            &patient_id,
            "--category",
            "correspondence",
            "--content-type",
            "text/plain",
            file.to_str().unwrap(),
        ])
        .await;
    let document = uploaded.ok().split_whitespace().next().unwrap().to_owned();
    let record = [
        "releases",
        "record",
        "--tenant",
        &tenant,
        "--patient",
        &patient_id,
        "--recipient",
        CANARY,
        "--purpose",
        "legal",
        "--document",
        &document,
    ];

    let refused = tenet.run(&record).await;
    refused.failed();
    assert!(refused.stderr.contains("not consented"), "{refused}");

    // `-` reads the recipient from standard input, out of the process list.
    let granted = tenet
        .run_with_stdin(
            &[
                "consents",
                "grant",
                "--tenant",
                &tenant,
                "--patient",
                &patient_id,
                "--scope",
                "release_of_information",
                "--recipient",
                "-",
            ],
            format!("{CANARY}\n").as_bytes(),
        )
        .await;
    let consent_id = single_line(granted.ok()).to_owned();
    let from_stdin = record.map(|arg| if arg == CANARY { "-" } else { arg });
    let elsewhere = tenet
        .run_with_stdin(&from_stdin, b"Someone Else Entirely\n")
        .await;
    elsewhere.failed();
    assert!(elsewhere.stderr.contains("not consented"), "{elsewhere}");
    let two_lines = tenet
        .run_with_stdin(
            &from_stdin,
            format!("{CANARY}\nand someone else\n").as_bytes(),
        )
        .await;
    two_lines.failed();
    assert!(
        two_lines.stderr.contains("must hold one line"),
        "{two_lines}"
    );
    let both = [&from_stdin[..], &["--description", "-"]].concat();
    let refused = tenet.run_with_stdin(&both, CANARY.as_bytes()).await;
    refused.failed();
    assert!(
        refused
            .stderr
            .contains("only one of --recipient and --description"),
        "{refused}"
    );
    let recorded = tenet
        .run_with_stdin(&from_stdin, format!("{CANARY}\r\n").as_bytes())
        .await;
    let release_id = single_line(recorded.ok()).to_owned();

    let listed = tenet
        .run(&[
            "releases",
            "list",
            "--tenant",
            &tenant,
            "--patient",
            &patient_id,
        ])
        .await;
    assert!(listed.ok().contains(&release_id), "{listed}");
    assert!(listed.ok().contains(&consent_id), "{listed}");
    let now = OffsetDateTime::now_utc();
    let reported = tenet
        .run(&[
            "releases",
            "report",
            "--tenant",
            &tenant,
            "--from",
            &(now - Duration::days(1)).format(&Rfc3339).unwrap(),
            "--to",
            &(now + Duration::days(1)).format(&Rfc3339).unwrap(),
        ])
        .await;
    assert!(reported.ok().contains("1 releases"), "{reported}");

    let revoke = [
        "consents",
        "revoke",
        "--tenant",
        &tenant,
        "--consent",
        &consent_id,
        "--reason",
        "patient_request",
    ];
    let revoked = tenet.run(&revoke).await;
    assert!(revoked.ok().contains("revoked"), "{revoked}");
    let again = tenet.run(&revoke).await;
    again.failed();
    assert!(again.stderr.contains("already revoked"), "{again}");
    let after = tenet.run(&record).await;
    after.failed();
    assert!(after.stderr.contains("revoked"), "{after}");

    let shown = tenet
        .run(&[
            "consents",
            "show",
            "--tenant",
            &tenant,
            "--consent",
            &consent_id,
        ])
        .await;
    assert!(shown.ok().contains("patient_request"), "{shown}");
    let consents = tenet
        .run(&[
            "consents",
            "list",
            "--tenant",
            &tenant,
            "--patient",
            &patient_id,
        ])
        .await;
    assert!(consents.ok().contains("[sealed]"), "{consents}");
    for run in [
        &refused, &granted, &recorded, &listed, &reported, &revoked, &again, &after, &shown,
        &consents,
    ] {
        assert!(!run.to_string().contains("Zqxclirecipient"), "{run}");
    }
}

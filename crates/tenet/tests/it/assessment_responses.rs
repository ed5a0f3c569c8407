//! `tenet assessments responses|scores|safety`: a patient's scores with their change
//! flags, and urgent safety events listed and acknowledged by the operator.

use assessments::InstrumentCode;
use assessments::response::{self, Answerer, Submission, Submitter};
use db::TenantTx;
use identity::keyring::{Keyring, MasterKey};
use identity::vault::{Access, Demographics};
use kernel::{Actor, PatientId, TenantId};

use crate::{Tenet, single_line};

fn phq9(patient_id: PatientId, values: [u8; 9]) -> Submission {
    Submission {
        patient_id,
        instance_id: None,
        instrument: InstrumentCode::new_unchecked("phq-9"),
        version: None,
        answerer: Some(Answerer::Patient),
        answers: values
            .iter()
            .enumerate()
            .map(|(i, value)| ((i + 1).to_string(), *value))
            .collect(),
    }
}

#[tokio::test]
async fn the_operator_sees_scores_with_change_and_acknowledges_a_safety_event() {
    let tenet = Tenet::new().await;
    let tenant = single_line(tenet.run(&["tenant", "create", "Harbor"]).await.ok()).to_owned();
    let tenant_id: TenantId = tenant.parse().unwrap();
    let user = single_line(
        tenet
            .run(&[
                "user",
                "create",
                "--tenant",
                &tenant,
                "--handle",
                "dr-lee",
                "--role",
                "clinician",
            ])
            .await
            .ok(),
    )
    .to_owned();

    let keyring = Keyring::new(MasterKey::from_file(&tenet.master_key_path()).unwrap());
    let mut tx = TenantTx::begin_as(&tenet.db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let patient_id = PatientId::generate();
    clinical::patient::insert(&mut tx, patient_id)
        .await
        .unwrap();
    let access = Access {
        purpose: Some("operations".to_owned()),
        break_glass: false,
    };
    identity::vault::insert(
        &mut tx,
        &keyring,
        patient_id,
        &Demographics::default(),
        &access,
    )
    .await
    .unwrap();
    let system = Submitter::Staff(Actor::system(tenant_id));
    for values in [[3, 3, 3, 3, 2, 2, 2, 2, 0], [1, 1, 1, 1, 0, 0, 0, 0, 1]] {
        response::submit(&mut tx, &keyring, &system, phq9(patient_id, values))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let patient = patient_id.to_string();

    let scores = tenet
        .run(&[
            "assessments",
            "scores",
            "--tenant",
            &tenant,
            "--patient",
            &patient,
            "--instrument",
            "phq-9",
        ])
        .await;
    let lines: Vec<&str> = scores.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{scores}");
    assert!(lines[0].contains(" 20  severe"), "{scores}");
    assert!(lines[1].contains("  5  mild"), "{scores}");
    assert!(
        lines[1].contains("baseline -15 reliably_improved"),
        "{scores}"
    );
    assert!(
        lines[1].contains("response") && !lines[1].contains("remission"),
        "{scores}"
    );

    let responses = tenet
        .run(&[
            "assessments",
            "responses",
            "--tenant",
            &tenant,
            "--patient",
            &patient,
        ])
        .await;
    assert!(responses.ok().contains("self_harm"), "{responses}");

    let listed = tenet
        .run(&["assessments", "safety", "list", "--tenant", &tenant])
        .await;
    let line = single_line(listed.ok()).to_owned();
    assert!(
        line.contains("self_harm") && line.contains("OPEN"),
        "{listed}"
    );
    let event_id = line.split_whitespace().next().unwrap().to_owned();
    tenet
        .run(&[
            "assessments",
            "safety",
            "ack",
            "--tenant",
            &tenant,
            "--user",
            &user,
            &event_id,
        ])
        .await
        .ok();
    let again = tenet
        .run(&[
            "assessments",
            "safety",
            "ack",
            "--tenant",
            &tenant,
            "--user",
            &user,
            &event_id,
        ])
        .await;
    again.failed();
    assert!(again.stderr.contains("already acknowledged"), "{again}");
    let open = tenet
        .run(&["assessments", "safety", "list", "--tenant", &tenant])
        .await;
    assert_eq!(single_line(open.ok()), "no open safety events");
    // Every read was audited as the operator's.
    let n_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE actor = 'operator' AND action IN ('assessment_scores.read', 'assessment_safety.read')",
    )
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    assert!(n_reads >= 3, "{n_reads}");
}

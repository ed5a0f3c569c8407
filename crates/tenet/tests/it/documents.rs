//! `tenet documents …`: an operator stores a file, lists it, downloads it back, holds
//! it against deletion and sets retention and scope rules — printing metadata only,
//! never a document's content or file name.

use kernel::{PatientId, TenantId};

use crate::{Tenet, single_line};

const CANARY: &str = "Zqxclicanary";

#[tokio::test]
async fn an_operator_uploads_lists_downloads_holds_and_deletes_a_document() {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "North Clinic"]).await.ok()).to_owned();
    let tenant_id = TenantId::new_unchecked(tenant.parse().unwrap());
    let patient_id = PatientId::generate();
    let mut tx = db::TenantTx::begin_as(&tenet.db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    clinical::patient::insert(&mut tx, patient_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let patient = patient_id.to_string();
    let file = tenet.home.path().join(format!("{CANARY} letter.txt"));
    std::fs::write(&file, format!("{CANARY} was seen today\n")).unwrap();

    let uploaded = tenet
        .run(&[
            "documents",
            "upload",
            "--tenant",
            &tenant,
            "--patient",
            &patient,
            "--category",
            "correspondence",
            "--content-type",
            "text/plain",
            file.to_str().unwrap(),
        ])
        .await;
    let document = uploaded.ok().split_whitespace().next().unwrap().to_owned();
    let listed = tenet
        .run(&[
            "documents",
            "list",
            "--tenant",
            &tenant,
            "--patient",
            &patient,
        ])
        .await;
    assert!(listed.ok().contains(&document), "{listed}");

    let out = tenet.home.path().join("back.txt");
    tenet
        .run(&[
            "documents",
            "download",
            "--tenant",
            &tenant,
            "--document",
            &document,
            "--out",
            out.to_str().unwrap(),
        ])
        .await
        .ok();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{CANARY} was seen today\n")
    );
    // The store holds ciphertext only.
    let object = std::fs::read(
        tenet
            .home
            .path()
            .join("documents")
            .join(&tenant)
            .join(&document),
    )
    .unwrap();
    assert!(
        !object
            .windows(CANARY.len())
            .any(|window| window == CANARY.as_bytes())
    );

    let held = tenet
        .run(&[
            "documents",
            "hold",
            "--tenant",
            &tenant,
            "--document",
            &document,
            "--reason",
            "Matter 17",
        ])
        .await;
    assert!(held.ok().contains("HELD"), "{held}");
    let refused = tenet
        .run(&[
            "documents",
            "delete",
            "--tenant",
            &tenant,
            "--document",
            &document,
        ])
        .await;
    assert!(
        refused.failed().contains("legal hold") || refused.to_string().contains("legal hold"),
        "{refused}"
    );
    tenet
        .run(&[
            "documents",
            "release",
            "--tenant",
            &tenant,
            "--document",
            &document,
        ])
        .await
        .ok();
    let deleted = tenet
        .run(&[
            "documents",
            "delete",
            "--tenant",
            &tenant,
            "--document",
            &document,
        ])
        .await;
    assert!(deleted.ok().contains("deleted"), "{deleted}");

    let retention = tenet
        .run(&[
            "documents",
            "retention",
            "--tenant",
            &tenant,
            "--category",
            "correspondence",
            "--keep-days",
            "2555",
        ])
        .await;
    assert!(
        retention
            .ok()
            .contains("keep 2555 days after last_encounter"),
        "{retention}"
    );
    let scopes = tenet
        .run(&[
            "documents",
            "scopes",
            "--tenant",
            &tenant,
            "--role",
            "care_coordinator",
            "--category",
            "lab_result",
            "--on-care-team",
            "--permission",
            "read",
        ])
        .await;
    let scopes = scopes.ok();
    assert_eq!(scopes.lines().count(), 5 * 8 * 2);
    assert!(
        scopes
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == ["care_coordinator", "lab_result", "care", "team", "read"]),
        "{scopes}"
    );
    let swept = tenet
        .run(&["documents", "sweep", "--tenant", &tenant])
        .await;
    assert!(swept.ok().contains("0 deleted"), "{swept}");

    for run in [&uploaded, &listed, &held, &deleted, &swept] {
        assert!(!run.to_string().contains(CANARY), "{run}");
    }
}

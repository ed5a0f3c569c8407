//! `tenet audit verify` and `tenet audit checkpoint`: intact on a clean log; after
//! each kind of tampering, a non-zero exit and a TAMPERED line naming where.

use audit::AuditEntry;
use db::TenantTx;
use kernel::{PatientId, TenantId};

use crate::{Tenet, single_line};

/// Events appended: the busiest lane gets at least 48 / 8 = 6.
const N_EVENTS: usize = 48;

/// A tenant created with `tenet tenant create`, with a log of [`N_EVENTS`] events,
/// and its busiest lane with that lane's last seq.
async fn tenant_with_log(tenet: &Tenet) -> (TenantId, i16, i64) {
    let tenant_id: TenantId = single_line(tenet.run(&["tenant", "create", "Clinic"]).await.ok())
        .parse()
        .unwrap();
    for i in 0..N_EVENTS {
        let mut tx = TenantTx::begin_as(&tenet.db.app, tenant_id, "user:dr-okafor", None)
            .await
            .unwrap();
        audit::append(
            &mut tx,
            AuditEntry::patient("patient.read", PatientId::generate()).purpose(if i % 2 == 0 {
                "treatment"
            } else {
                "operations"
            }),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let (lane, last_seq): (i16, i64) = sqlx::query_as(
        "SELECT lane, seq FROM audit.chain_heads WHERE tenant_id = $1 ORDER BY seq DESC, lane LIMIT 1",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    (tenant_id, lane, last_seq)
}

/// The row of `tenant_id`'s `lane` at `seq`, in SQL.
fn row(tenant_id: TenantId, lane: i16, seq: i64) -> String {
    format!("tenant_id = '{tenant_id}' AND lane = {lane} AND seq = {seq}")
}

/// Runs `tenet audit verify`, asserts it fails, and returns its TAMPERED lines.
async fn tampered_lines(tenet: &Tenet) -> Vec<String> {
    let run = tenet.run(&["audit", "verify"]).await;
    let stdout = run.failed();
    let lines: Vec<String> = stdout
        .lines()
        .filter(|line| line.starts_with("TAMPERED "))
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "no TAMPERED line:\n{run}");
    assert!(!stdout.contains("intact"), "{run}");
    lines
}

#[track_caller]
fn assert_named(lines: &[String], tenant_id: TenantId, needle: &str) {
    let prefix = format!("TAMPERED tenant {tenant_id}: {needle}");
    assert!(
        lines.iter().any(|line| line.starts_with(&prefix)),
        "no line starting {prefix:?} in {lines:#?}"
    );
}

#[tokio::test]
async fn verify_says_intact_on_a_clean_log() {
    let tenet = Tenet::new().await;
    tenant_with_log(&tenet).await;
    tenant_with_log(&tenet).await;

    let run = tenet.run(&["audit", "verify"]).await;
    let stdout = run.ok();
    assert!(!stdout.contains("TAMPERED"), "{run}");
    assert!(
        stdout.contains(&format!("{} event(s)", 2 * N_EVENTS)) && stdout.contains("intact"),
        "{run}"
    );

    let run = tenet.run(&["audit", "checkpoint"]).await;
    assert!(run.ok().starts_with("2 checkpoint(s) written"), "{run}");
    let run = tenet.run(&["audit", "checkpoint"]).await;
    assert!(
        run.ok().starts_with("0 checkpoint(s) written"),
        "nothing moved: {run}"
    );
    let run = tenet.run(&["audit", "verify"]).await;
    let stdout = run.ok();
    assert!(
        stdout.contains("2 checkpoint(s)") && stdout.contains("intact"),
        "{run}"
    );
}

#[tokio::test]
async fn verify_names_the_lane_and_seq_of_a_row_updated_by_a_superuser() {
    let tenet = Tenet::new().await;
    let (tenant_id, lane, last_seq) = tenant_with_log(&tenet).await;
    let seq = last_seq / 2;
    tenet
        .as_attacker(&format!(
            "UPDATE audit.events SET purpose = 'marketing' WHERE {}",
            row(tenant_id, lane, seq)
        ))
        .await;

    let lines = tampered_lines(&tenet).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_named(
        &lines,
        tenant_id,
        &format!("lane {lane} seq {seq}: row edited"),
    );
}

#[tokio::test]
async fn verify_names_the_lane_and_seq_of_a_row_deleted_by_a_superuser() {
    let tenet = Tenet::new().await;
    let (tenant_id, lane, last_seq) = tenant_with_log(&tenet).await;
    let seq = last_seq / 2;
    tenet
        .as_attacker(&format!(
            "DELETE FROM audit.events WHERE {}",
            row(tenant_id, lane, seq)
        ))
        .await;

    let lines = tampered_lines(&tenet).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_named(
        &lines,
        tenant_id,
        &format!("lane {lane} seq {seq}..={seq}: rows deleted"),
    );
}

#[tokio::test]
async fn verify_names_the_lane_and_seqs_of_rows_reordered_by_a_superuser() {
    let tenet = Tenet::new().await;
    let (tenant_id, lane, last_seq) = tenant_with_log(&tenet).await;
    let (a, b) = (1, last_seq - 1);
    tenet
        .as_attacker(&format!(
            "UPDATE audit.events SET seq = 1000000 WHERE {};
             UPDATE audit.events SET seq = {a} WHERE {};
             UPDATE audit.events SET seq = {b} WHERE {}",
            row(tenant_id, lane, a),
            row(tenant_id, lane, b),
            row(tenant_id, lane, 1_000_000),
        ))
        .await;

    let lines = tampered_lines(&tenet).await;
    assert_named(&lines, tenant_id, &format!("lane {lane} seq {a}: "));
    assert_named(&lines, tenant_id, &format!("lane {lane} seq {b}: "));
}

#[tokio::test]
async fn verify_names_the_lane_of_a_tail_cut_after_a_checkpoint() {
    let tenet = Tenet::new().await;
    let (tenant_id, lane, last_seq) = tenant_with_log(&tenet).await;
    let run = tenet.run(&["audit", "checkpoint"]).await;
    assert!(run.ok().starts_with("1 checkpoint(s) written"), "{run}");
    assert!(
        tenet.checkpoint_key_path().exists(),
        "the signing key was created"
    );
    let new_last_seq = last_seq - 2;

    // A careful attacker also moves the head back to the new last row, so only the
    // signed checkpoint still knows how long the lane was.
    tenet
        .as_attacker(&format!(
            "DELETE FROM audit.events WHERE tenant_id = '{tenant_id}' AND lane = {lane} AND seq > {new_last_seq};
             UPDATE audit.chain_heads AS h SET seq = e.seq, hash = e.hash FROM audit.events AS e
                 WHERE h.tenant_id = '{tenant_id}' AND h.lane = {lane}
                   AND e.tenant_id = h.tenant_id AND e.lane = h.lane AND e.seq = {new_last_seq}"
        ))
        .await;

    let lines = tampered_lines(&tenet).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_named(
        &lines,
        tenant_id,
        &format!(
            "lane {lane}: checkpoint covers seq {last_seq} but the log ends at seq {new_last_seq} (truncated)"
        ),
    );
}

#[tokio::test]
async fn verify_of_one_tenant_walks_only_it_and_refuses_a_tenant_that_does_not_exist() {
    let tenet = Tenet::new().await;
    let (intact, _, _) = tenant_with_log(&tenet).await;
    let (tampered, lane, last_seq) = tenant_with_log(&tenet).await;
    tenet
        .as_attacker(&format!(
            "DELETE FROM audit.events WHERE {}",
            row(tampered, lane, last_seq / 2)
        ))
        .await;

    let run = tenet
        .run(&["audit", "verify", "--tenant", &intact.to_string()])
        .await;
    let stdout = run.ok();
    assert!(
        stdout.contains(&format!(
            "{N_EVENTS} event(s) and 0 checkpoint(s) of 1 tenant(s)"
        )) && stdout.contains("intact"),
        "{run}"
    );
    let run = tenet
        .run(&["audit", "verify", "--tenant", &tampered.to_string()])
        .await;
    assert!(
        run.failed()
            .contains(&format!("TAMPERED tenant {tampered}")),
        "{run}"
    );

    let nobody = TenantId::generate();
    let run = tenet
        .run(&["audit", "verify", "--tenant", &nobody.to_string()])
        .await;
    let stdout = run.failed();
    assert!(
        !stdout.contains("intact"),
        "an unknown tenant is not intact: {run}"
    );
    assert!(run.stderr.contains(&format!("no tenant {nobody}")), "{run}");
}

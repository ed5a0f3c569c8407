//! Cadence edge cases through the database and the materialiser: a week across the
//! start of daylight saving time, a month-end anchor, and sessions racing days.

use time::Duration;

use super::*;

fn due_times(rows: &[Row]) -> Vec<OffsetDateTime> {
    rows.iter().map(|row| row.due_at).collect()
}

#[tokio::test]
async fn weekly_due_times_stay_at_nine_local_across_the_start_of_daylight_saving_time() {
    let world = World::new().await;
    let def = plan_json(serde_json::json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }],
        "cadence": { "every_days": 7 },
        "window": { "before_days": 1, "after_days": 2 },
        "local_time": "09:00"
    }));
    let plan = world.plan("weekly", &def).await;
    let patient_id = world.patient(adult()).await;
    // New York moves to EDT on Sunday 2027-03-14.
    let start = at("2027-03-01T15:00:00Z");
    let enrollment_id = world
        .enroll(plan.id, patient_id, "America/New_York", start, start)
        .await;
    world
        .materialize_every(Duration::hours(6), start, at("2027-03-20T18:00:00Z"))
        .await;
    let rows = world.instances(enrollment_id).await;
    assert_eq!(
        due_times(&rows),
        [
            at("2027-03-01T14:00:00Z"),
            at("2027-03-08T14:00:00Z"),
            at("2027-03-15T13:00:00Z"),
            at("2027-03-22T13:00:00Z"),
        ]
    );
    let statuses: Vec<&str> = rows.iter().map(|row| row.status.as_str()).collect();
    assert_eq!(statuses, ["missed", "missed", "missed", "scheduled"]);
}

#[tokio::test]
async fn a_month_end_anchor_falls_on_each_months_last_day() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let patient_id = world.patient(adult()).await;
    let start = at("2031-01-31T10:00:00Z");
    let enrollment_id = world.enroll(plan.id, patient_id, "UTC", start, start).await;
    world
        .materialize_every(Duration::days(1), start, at("2031-04-28T00:00:00Z"))
        .await;
    assert_eq!(
        due_times(&world.instances(enrollment_id).await),
        [
            at("2031-01-31T09:00:00Z"),
            at("2031-02-28T09:00:00Z"),
            at("2031-03-31T09:00:00Z"),
            at("2031-04-30T09:00:00Z"),
        ]
    );
}

#[tokio::test]
async fn two_finished_sessions_bring_the_next_slot_before_the_28_days() {
    let world = World::new().await;
    let def = plan_json(serde_json::json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }],
        "cadence": { "every_days": 28, "every_sessions": 2 },
        "window": { "before_days": 0, "after_days": 3 }
    }));
    let plan = world.plan("sessions", &def).await;
    let patient_id = world.patient(adult()).await;
    let start = at("2032-05-03T08:00:00Z");
    let enrollment_id = world.enroll(plan.id, patient_id, "UTC", start, start).await;
    world.materialize_at(start).await;
    // Two sessions end on day 5 and day 10.
    for day in [5, 10] {
        let mut tx = world.tx().await;
        let began = start + Duration::days(day);
        clinical::encounter::start(&mut tx, patient_id, Some("O"), Some(began))
            .await
            .unwrap();
        clinical::encounter::finish_latest(&mut tx, patient_id, Some(began + Duration::hours(1)))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    world
        .materialize_every(Duration::hours(1), start, start + Duration::days(12))
        .await;
    let rows = world.instances(enrollment_id).await;
    assert_eq!(
        due_times(&rows),
        [
            at("2032-05-03T09:00:00Z"),
            // The second session's end, not day 28.
            at("2032-05-13T09:00:00Z"),
        ]
    );
    assert_eq!(rows[1].status, "open");
}

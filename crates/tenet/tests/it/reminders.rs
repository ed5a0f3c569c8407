//! `tenet reminders` sets a tenant's reminder settings (and its sweep schedule) and a
//! patient's opt-outs; `serve` refuses a malformed SMTP URL without printing it.

use crate::{Tenet, single_line};

#[tokio::test]
async fn reminders_configure_show_and_preferences_and_a_bad_smtp_url_stops_serve() {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "North Clinic"]).await.ok()).to_owned();
    let configured = tenet
        .run(&[
            "reminders",
            "configure",
            "--tenant",
            &tenant,
            "--quiet-hours",
            "22:00-07:30",
            "--closing-lead-hours",
            "12",
            "--channels",
            "email",
            "--first-name",
        ])
        .await;
    configured.ok();
    let shown = tenet.run(&["reminders", "show", "--tenant", &tenant]).await;
    for expected in [
        "channels email;",
        "quiet hours 22:00-07:30",
        "12 h",
        "by first name",
    ] {
        assert!(shown.ok().contains(expected), "{expected}: {shown}");
    }
    let schedules = tenet.run(&["schedules", "list", "--tenant", &tenant]).await;
    assert!(
        schedules.ok().contains("assessments.reminders"),
        "{schedules}"
    );

    let bad = tenet
        .run(&[
            "reminders",
            "configure",
            "--tenant",
            &tenant,
            "--quiet-hours",
            "25:00-07:00",
        ])
        .await;
    bad.failed();
    assert!(bad.stderr.contains("HH:MM-HH:MM"), "{bad}");

    let patient = uuid::Uuid::now_v7().to_string();
    tenet
        .run(&[
            "reminders",
            "preferences",
            "--tenant",
            &tenant,
            "--patient",
            &patient,
            "--opt-out",
            "email",
        ])
        .await
        .ok();
    let nobody = tenet
        .run(&[
            "reminders",
            "list",
            "--tenant",
            &tenant,
            "--instance",
            &patient,
        ])
        .await;
    assert!(nobody.ok().contains("no reminders"), "{nobody}");

    let serve = tenet
        .run(&[
            "serve",
            "--workers",
            "0",
            "--smtp-url",
            "smtp://user:s3cretpw@mail.example:notaport",
            "--smtp-from",
            "r@north.example",
            "--reminder-link-base",
            "https://answer.north.example/a/",
        ])
        .await;
    serve.failed();
    assert!(serve.stderr.contains("--smtp-url"), "{serve}");
    assert!(
        !serve.stderr.contains("s3cretpw") && !serve.stdout.contains("s3cretpw"),
        "{serve}"
    );
}

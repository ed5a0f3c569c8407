//! `--help` for every subcommand: exits 0 and names the subcommand's options.

use crate::Run;

/// Every subcommand, and options its help must mention.
const SUBCOMMANDS: &[(&[&str], &[&str])] = &[
    (
        &[],
        &[
            "up",
            "serve",
            "migrate",
            "tenant",
            "user",
            "apikey",
            "audit",
            "check",
            "keys",
            "hl7",
            "jobs",
            "deadletters",
            "webhooks",
            "schedules",
            "sagas",
            "ingest",
            "documents",
            "--home",
            "--documents-store",
            "--documents-size-max-bytes",
            "--database-url",
            "--log-format",
        ],
    ),
    (&["up"], &["--http", "--demo", "--checkpoint-secs"]),
    (
        &["documents"],
        &[
            "list",
            "show",
            "upload",
            "download",
            "delete",
            "hold",
            "release",
            "retention",
            "scopes",
            "sweep",
        ],
    ),
    (
        &["documents", "upload"],
        &["--tenant", "--patient", "--category", "--content-type"],
    ),
    (
        &["documents", "retention"],
        &["--category", "--keep-days", "--anchor", "--clear"],
    ),
    (
        &["documents", "scopes"],
        &["--role", "--category", "--on-care-team", "--permission"],
    ),
    (
        &["serve"],
        &[
            "--http",
            "--checkpoint-secs",
            "--db-connections",
            "--oidc-issuer",
            "--oidc-audience",
            "--oidc-jwks-url",
            "--oidc-tenant-claim",
            "--break-glass-secs",
            "--workers",
            "--role",
            "--no-http",
            "--ops-http",
            "--mllp-config",
            "--mllp",
            "--mllp-tenant",
            "--job-lease-secs",
            "--queue-limit",
            "--nats-url",
            "--nats-stream",
            "--ingest-retention-days",
        ],
    ),
    (&["migrate"], &["up", "down", "status"]),
    (&["migrate", "up"], &["--database-url"]),
    (&["migrate", "down"], &["--steps"]),
    (&["migrate", "status"], &["--database-url"]),
    (&["tenant"], &["create", "list"]),
    (&["tenant", "create"], &["<NAME>"]),
    (&["tenant", "list"], &["--database-url"]),
    (&["user"], &["create"]),
    (
        &["user", "create"],
        &["--tenant", "--handle", "--role", "--oidc-subject"],
    ),
    (&["apikey"], &["create"]),
    (
        &["apikey", "create"],
        &["--tenant", "--role", "--label", "--user"],
    ),
    (&["audit"], &["verify", "checkpoint"]),
    (&["audit", "verify"], &["--tenant"]),
    (&["audit", "checkpoint"], &["--tenant"]),
    (
        &["check"],
        &[
            "--json",
            "--lease-grace-secs",
            "--overdue-secs",
            "--slot-late-secs",
            "--saga-idle-secs",
        ],
    ),
    (&["keys"], &["rotate"]),
    (&["keys", "rotate"], &["--database-url"]),
    (&["jobs"], &["list", "show", "retry", "cancel", "probe"]),
    (
        &["jobs", "probe"],
        &[
            "--tenant",
            "--count",
            "--work-ms",
            "--wait",
            "--timeout-secs",
        ],
    ),
    (&["deadletters"], &["list", "show", "retry", "discard"]),
    (&["deadletters", "list"], &["--tenant", "--limit"]),
    (&["deadletters", "discard"], &["<ID>"]),
    (&["webhooks"], &["create", "list", "disable", "enable"]),
    (&["webhooks", "create"], &["--tenant", "--url", "--events"]),
    (
        &["schedules"],
        &["create", "list", "enable", "disable", "delete"],
    ),
    (
        &["schedules", "create"],
        &[
            "--tenant",
            "--name",
            "--cron",
            "--time-zone",
            "--kind",
            "--args",
            "--catch-up",
        ],
    ),
    (&["sagas", "list"], &["--state", "--tenant", "--limit"]),
    (&["jobs", "list"], &["--state", "--tenant", "--limit"]),
    (&["jobs", "show"], &["<ID>"]),
    (&["jobs", "retry"], &["<ID>"]),
    (&["jobs", "cancel"], &["<ID>"]),
    (&["ingest"], &["list", "show", "retention"]),
    (
        &["ingest", "list"],
        &["--tenant", "--status", "--listener", "--since", "--limit"],
    ),
    (&["ingest", "show"], &["<ID>", "--raw", "--purpose"]),
    (&["ingest", "retention"], &["--days", "--dry-run"]),
    (&["assessments"], &["responses", "scores", "safety"]),
    (
        &["assessments", "responses"],
        &["--tenant", "--patient", "--instrument"],
    ),
    (
        &["assessments", "scores"],
        &["--tenant", "--patient", "--instrument"],
    ),
    (
        &["assessments", "safety", "list"],
        &["--tenant", "--all", "--limit"],
    ),
    (
        &["assessments", "safety", "ack"],
        &["--tenant", "--user", "<ID>"],
    ),
    (&["consents"], &["grant", "revoke", "list", "show"]),
    (
        &["consents", "grant"],
        &[
            "--tenant",
            "--patient",
            "--scope",
            "--recipient",
            "--valid-until",
            "--evidence-document",
        ],
    ),
    (
        &["consents", "revoke"],
        &["--tenant", "--consent", "--reason"],
    ),
    (&["releases"], &["record", "list", "report"]),
    (
        &["releases", "record"],
        &[
            "--tenant",
            "--patient",
            "--recipient",
            "--purpose",
            "--document",
            "--description",
        ],
    ),
    (&["releases", "report"], &["--tenant", "--from", "--to"]),
    (&["hl7"], &["parse", "send"]),
    (&["hl7", "parse"], &["<FILE>", "--json"]),
    (&["hl7", "send"], &["--to", "--timeout-secs", "<FILES>"]),
];

#[tokio::test]
async fn every_subcommand_has_help_that_names_its_options() {
    for (subcommand, options) in SUBCOMMANDS {
        let mut args = subcommand.to_vec();
        args.push("--help");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenet"))
            .args(&args)
            .env_remove("DATABASE_URL")
            .output()
            .await
            .expect("running tenet");
        let run = Run::new(&args, output);
        let help = run.ok();
        assert!(
            help.contains("Usage: tenet"),
            "`{}` prints usage:\n{run}",
            run.command
        );
        for option in *options {
            assert!(
                help.contains(option),
                "`{}` mentions {option}:\n{run}",
                run.command
            );
        }
    }
}

#[tokio::test]
async fn an_unknown_subcommand_fails_with_usage() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenet"))
        .arg("frobnicate")
        .output()
        .await
        .expect("running tenet");
    let run = Run::new(&["frobnicate"], output);
    run.failed();
    assert!(run.stderr.contains("Usage: tenet"), "{run}");
}

//! `tenet up` and `tenet serve`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use db::TenantTx;
use identity::keyring::Keyring;
use kernel::{Role, TenantId};

use crate::cli::{Global, ServeArgs, UpArgs};
use crate::output::say;
use crate::{settings, wiring};

const DEMO_TENANT: &str = "Demo Clinic";

pub async fn up(global: &Global, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let database = settings::database(global).await?;
    if let Some((cluster, startup)) = &database.cluster {
        tracing::info!(
            data_dir = %cluster.data_dir().display(),
            startup = ?startup,
            "embedded PostgreSQL ready"
        );
    }
    let (owner, app) = database
        .config
        .connect(4)
        .await
        .context("connecting to the database")?;
    let n_applied = schema::migrator().up(&owner).await.context("migrating")?;
    if n_applied > 0 {
        tracing::info!(n_applied, "migrations applied");
    }
    let mut serve_args = args.serve.clone();
    if args.demo {
        let keyring = Keyring::new(settings::master_key(global)?);
        let demo_tenant = demo(&owner, &app, &keyring).await?;
        // The demo tenant receives HL7 v2 on the registered MLLP port unless other
        // listeners are configured.
        if serve_args.mllp.is_none() && serve_args.mllp_config.is_none() {
            serve_args.mllp = Some(DEMO_MLLP.parse().expect("BUG: a valid address"));
            serve_args.mllp_tenant = Some(demo_tenant.into_uuid());
        }
    }
    owner.close().await;
    app.close().await;
    tracing::info!(
        ready_ms = started.elapsed().as_millis() as u64,
        "ready to serve"
    );
    let result = wiring::serve(global, &serve_args, &database).await;
    database.finish().await?;
    result.map(|()| ExitCode::SUCCESS)
}

/// Where `tenet up --demo` receives HL7 v2 for the demo tenant: the registered MLLP port.
const DEMO_MLLP: &str = "127.0.0.1:2575";

pub async fn serve(global: &Global, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let database = settings::database(global).await?;
    let result = wiring::serve(global, args, &database).await;
    database.finish().await?;
    result.map(|()| ExitCode::SUCCESS)
}

/// Creates the demo tenant, its users and API keys, once; prints the keys. Returns
/// the demo tenant.
async fn demo(
    owner: &sqlx::PgPool,
    app: &sqlx::PgPool,
    keyring: &Keyring,
) -> anyhow::Result<TenantId> {
    let tenants = identity::tenant::list_all(owner).await?;
    if let Some(tenant) = tenants.iter().find(|tenant| tenant.name == DEMO_TENANT) {
        say(format!(
            "Demo tenant {} exists; its API keys were printed when it was created.\n\
             Make another with: tenet apikey create --tenant {} --role admin",
            tenant.tenant_id, tenant.tenant_id
        ));
        return Ok(tenant.tenant_id);
    }
    let tenant_id = identity::tenant::create(app, keyring, DEMO_TENANT).await?;
    let mut tx = TenantTx::begin_as(app, tenant_id, "system", None).await?;
    let mut lines = Vec::new();
    for (handle, role) in [
        ("demo-admin", Role::Admin),
        ("demo-clinician", Role::Clinician),
        ("demo-coordinator", Role::CareCoordinator),
        ("demo-auditor", Role::Auditor),
        ("demo-integration", Role::Integration),
    ] {
        let user_id = identity::user::create(&mut tx, handle, role, None).await?;
        let key =
            identity::api_key::create(&mut tx, role, &format!("{handle} (demo)"), Some(user_id))
                .await?;
        lines.push(format!(
            "  {:<18} {:<17} {}",
            handle,
            role.as_str(),
            key.token
        ));
    }
    tx.commit().await?;
    say(format!(
        "Demo tenant \"{DEMO_TENANT}\" created: {tenant_id}"
    ));
    say("API keys (shown once; keep them):");
    say(format!("  {:<18} {:<17} key", "user", "role"));
    for line in lines {
        say(line);
    }
    say(format!(
        "HL7 v2 over MLLP for this tenant: {DEMO_MLLP} (try `tenet hl7 send --to {DEMO_MLLP} FILE`)"
    ));
    Ok(tenant_id)
}

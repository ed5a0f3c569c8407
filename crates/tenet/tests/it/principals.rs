//! `tenet tenant create`, `user create` and `apikey create`.

use kernel::{ActorKind, Role, TenantId};

use crate::{Tenet, single_line};

#[tokio::test]
async fn tenant_user_and_api_key_are_created_and_the_key_is_shown_once() {
    let tenet = Tenet::new().await;

    let tenant_id: TenantId = single_line(
        tenet
            .run(&["tenant", "create", "Riverside Clinic"])
            .await
            .ok(),
    )
    .parse()
    .expect("`tenant create` prints the tenant id");
    let listed = tenet.run(&["tenant", "list"]).await;
    assert_eq!(
        single_line(listed.ok()),
        format!("{tenant_id}  Riverside Clinic")
    );
    // The tenant has its audit chain, and its data key is wrapped by the key file's key.
    let n_heads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit.chain_heads WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .fetch_one(&tenet.db.admin)
            .await
            .unwrap();
    assert_eq!(n_heads, i64::from(audit::LANES));
    let master = identity::keyring::MasterKey::from_file(&tenet.master_key_path()).unwrap();
    let wrapped_by: String =
        sqlx::query_scalar("SELECT master_key_id FROM identity.data_keys WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .fetch_one(&tenet.db.admin)
            .await
            .unwrap();
    assert_eq!(wrapped_by, master.id());

    let tenant = tenant_id.to_string();
    let user_id: kernel::UserId = single_line(
        tenet
            .run(&[
                "user",
                "create",
                "--tenant",
                &tenant,
                "--handle",
                "dr.okafor",
                "--role",
                "clinician",
            ])
            .await
            .ok(),
    )
    .parse()
    .expect("`user create` prints the user id");
    let (handle, role): (String, String) = sqlx::query_as(
        "SELECT handle, role::text FROM identity.users WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!((handle.as_str(), role.as_str()), ("dr.okafor", "clinician"));

    let user = user_id.to_string();
    let run = tenet
        .run(&[
            "apikey",
            "create",
            "--tenant",
            &tenant,
            "--role",
            "clinician",
            "--label",
            "ward tablet",
            "--user",
            &user,
        ])
        .await;
    let token = single_line(run.ok()).to_owned();
    assert!(token.starts_with("tk_"), "{run}");
    assert!(
        run.stderr.contains("shown once"),
        "the operator is told the key is shown once: {run}"
    );
    assert!(
        !run.stderr.contains(&token),
        "the key is never logged: {run}"
    );

    // The printed key authenticates, as the user it was issued to.
    let actor = identity::api_key::authenticate(&tenet.db.app, &token)
        .await
        .expect("the printed key authenticates");
    assert_eq!(actor.tenant_id, tenant_id);
    assert_eq!(actor.role, Role::Clinician);
    assert_eq!(actor.user_id, Some(user_id));
    assert!(matches!(actor.kind, ActorKind::ApiKey(_)));
    // Only its hash is stored.
    let secret = token.rsplit('.').next().unwrap();
    let n_plaintext: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM identity.api_keys AS k WHERE strpos(k::text, $1) > 0",
    )
    .bind(secret)
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!(n_plaintext, 0);
}

#[tokio::test]
async fn users_and_keys_of_a_tenant_that_does_not_exist_are_refused() {
    let tenet = Tenet::new().await;
    let nobody = TenantId::generate().to_string();

    let run = tenet
        .run(&[
            "user", "create", "--tenant", &nobody, "--handle", "ghost", "--role", "admin",
        ])
        .await;
    run.failed();
    assert!(run.stderr.contains("no active tenant"), "{run}");

    let run = tenet
        .run(&[
            "apikey",
            "create",
            "--tenant",
            &nobody,
            "--role",
            "integration",
        ])
        .await;
    run.failed();
    assert!(run.stderr.contains("no active tenant"), "{run}");

    let run = tenet
        .run(&[
            "user",
            "create",
            "--tenant",
            &nobody,
            "--handle",
            "x",
            "--role",
            "superhero",
        ])
        .await;
    run.failed();
    assert!(
        run.stderr.contains("superhero"),
        "an unknown role is named: {run}"
    );
}

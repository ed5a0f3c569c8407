//! The same sealed round trip against an S3-compatible server: moto's server, run on
//! a free 127.0.0.1 port for the test (`cargo xtask ci` installs it in a virtualenv
//! under `target/`). A multipart upload of several parts, read back, deleted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use documents::{Category, Storage};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::{CANARY, text_document, world};

const BUCKET: &str = "tenet-documents";

/// `TENET_TEST_MOTO_SERVER`, the virtualenv `cargo xtask ci` makes, or `PATH`.
fn binary() -> PathBuf {
    let in_target = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/s3-test-server/bin/moto_server");
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    std::env::var_os("TENET_TEST_MOTO_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain([in_target])
        .chain(on_path.into_iter().map(|dir| dir.join("moto_server")))
        .find(|candidate| candidate.is_file())
        .expect(
            "moto_server is not installed: the S3 storage test needs an S3-compatible server \
             (`cargo xtask ci` installs moto[server] in target/s3-test-server, or set TENET_TEST_MOTO_SERVER)",
        )
}

struct MotoServer {
    port: u16,
    child: Child,
}

impl MotoServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting moto_server");
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Creating the bucket doubles as the readiness probe.
        loop {
            match server.request(&format!("PUT /{BUCKET} HTTP/1.1")).await {
                Ok(status) if status.contains(" 200 ") => break,
                _ if Instant::now() > deadline => panic!("moto_server did not come up"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        server
    }

    async fn request(&self, line: &str) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(
                format!(
                    "{line}\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok(String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    fn storage(&self) -> (Storage, Arc<dyn ObjectStore>) {
        let s3: Arc<dyn ObjectStore> = Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(format!("http://127.0.0.1:{}", self.port))
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_bucket_name(BUCKET)
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .unwrap(),
        );
        (Storage::new(s3.clone(), format!("s3://{BUCKET}")), s3)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn a_document_round_trips_through_an_s3_compatible_store_as_ciphertext() {
    let server = MotoServer::start().await;
    let (storage, s3) = server.storage();
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    // Over one 5 MiB part: a real multipart upload of two parts.
    let content = format!("{CANARY}\n").repeat(140_000);
    assert!(content.len() > 6 * 1024 * 1024);

    let mut tx = world.tx(tenant_id).await;
    let document = documents::put_bytes(
        &mut tx,
        &world.keyring,
        &storage,
        text_document(patient_id, Category::ClinicalNote),
        Bytes::from(content.clone()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let key = Storage::object_key(tenant_id, document.id);
    let object = s3.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        object.len() as u64,
        documents::document::sealed_len(&document)
    );
    assert!(!object.windows(9).any(|window| window == b"Zqxcanary"));

    let mut tx = world.tx(tenant_id).await;
    let (_, read) = documents::document::read_bytes(
        &mut tx,
        &world.keyring,
        &storage,
        document.id,
        "treatment",
    )
    .await
    .unwrap();
    assert!(read.expose() == content.as_bytes());
    documents::document::delete(&mut tx, document.id)
        .await
        .unwrap();
    let tenant_id = tx.tenant_id();
    tx.commit().await.unwrap();
    documents::document::remove_content(&storage, tenant_id, document.id)
        .await
        .unwrap();
    assert!(matches!(
        s3.get(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

//! A real SMTP server for the tests: Python's `aiosmtpd` on 127.0.0.1, started per
//! test. Each accepted message is written to a directory as `NNNN.eml`, headed by an
//! `X-Envelope-To:` line; a file `refuse_next` makes it answer the next message's
//! data with that file's reply instead (once); `DROP` cuts the connection after the
//! data arrived, before the verdict.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SERVER: &str = r#"
import asyncio, itertools, os, sys, threading
from aiosmtpd.smtp import SMTP

outdir = sys.argv[1]
counter = itertools.count(1)

def watch_parent():
    # The test holds our stdin: when it goes away, so do we.
    sys.stdin.read()
    os._exit(0)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        refuse = os.path.join(outdir, 'refuse_next')
        if os.path.exists(refuse):
            with open(refuse) as f:
                reply = f.read().strip()
            os.remove(refuse)
            if reply == 'DROP':
                # The message arrived; the verdict never leaves.
                server.transport.abort()
                return '250 2.0.0 OK'
            return reply
        path = os.path.join(outdir, '%04d.eml' % next(counter))
        with open(path + '.tmp', 'wb') as f:
            f.write(('X-Envelope-To: %s\r\n' % ','.join(envelope.rcpt_tos)).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(path + '.tmp', path)
        return '250 2.0.0 OK'

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler(), hostname='localhost'), '127.0.0.1', 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

threading.Thread(target=watch_parent, daemon=True).start()
asyncio.run(main())
"#;

/// A Python that has aiosmtpd: Debian's package installs it for the system's
/// `/usr/bin/python3`, which another `python3` earlier on PATH may hide.
fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        ["python3", "/usr/bin/python3"]
            .into_iter()
            .find(|python| {
                std::process::Command::new(python)
                    .args(["-c", "import aiosmtpd"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            })
            .expect("a python3 with aiosmtpd (Debian: apt-get install python3-aiosmtpd)")
    })
}

pub struct SmtpServer {
    _child: Child,
    pub port: u16,
    dir: PathBuf,
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub envelope_to: String,
    /// Headers and body, as sent (line endings normalised to `\n`).
    pub text: String,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let dir = std::env::temp_dir().join(format!("tenet-smtp-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(python())
            .arg("-c")
            .arg(SERVER)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (Debian: python3-aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("aiosmtpd started")
        .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("aiosmtpd did not start: {line:?}"));
        SmtpServer {
            _child: child,
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers the next message's data with `reply` (`451 4.3.0 try later`).
    pub fn refuse_next(&self, reply: &str) {
        std::fs::write(self.dir.join("refuse_next"), reply).unwrap();
    }

    pub fn mails(&self) -> Vec<Mail> {
        read_mails(&self.dir)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_mails(dir: &Path) -> Vec<Mail> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap().replace("\r\n", "\n");
            let (first, rest) = text.split_once('\n').unwrap();
            Mail {
                envelope_to: first.trim_start_matches("X-Envelope-To: ").to_owned(),
                text: rest.to_owned(),
            }
        })
        .collect()
}

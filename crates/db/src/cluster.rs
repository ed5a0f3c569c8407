//! A private PostgreSQL cluster, run from the PostgreSQL binaries installed on the
//! machine.
//!
//! `tenet up` keeps one under `./.tenet/` and the tests keep a throwaway one. The
//! cluster listens on a unix socket only (never TCP), in a directory only its OS user
//! can enter. PostgreSQL refuses to run as root, so when we are root the cluster runs
//! as the unprivileged OS user [`PG_OS_USER`], created on first use.
//!
//! This module must never leave a cluster half-initialised without saying so: a data
//! directory without `PG_VERSION` is an error for the operator, not something to wipe.

use std::ffi::OsStr;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnectOptions;
use tokio::process::Command;

/// The OS user the cluster runs as when Tenet runs as root.
pub const PG_OS_USER: &str = "tenet-pg";
/// The cluster's bootstrap superuser (a database role, not an OS user).
pub const SUPERUSER: &str = "tenet_admin";
/// The socket "port": the cluster listens on no TCP port, but the number names the socket file.
pub const SOCKET_PORT: u16 = 5432;
/// The oldest PostgreSQL major version Tenet runs on.
pub const PG_MAJOR_MIN: u32 = 15;
/// `sun_path` holds 108 bytes; PostgreSQL needs room for `/.s.PGSQL.5432`.
const SOCKET_DIR_LEN_MAX: usize = 90;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL {PG_MAJOR_MIN}+ server binaries found (looked in $TENET_PG_BIN, `pg_config --bindir` and /usr/lib/postgresql/*/bin); install them, e.g. `apt-get install postgresql`"
    )]
    BinariesNotFound,
    #[error(
        "PostgreSQL runs as the OS user {user}, which cannot enter {dir}; put the data directory somewhere it can reach (set TENET_HOME)"
    )]
    Unreachable { user: String, dir: PathBuf },
    #[error("{dir} exists but is not a PostgreSQL data directory; move it away or set TENET_HOME")]
    NotADataDirectory { dir: PathBuf },
    #[error("could not create the OS user {PG_OS_USER} to run PostgreSQL: {reason}")]
    OsUser { reason: String },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// The uid and gid the cluster's processes and files belong to.
#[derive(Debug, Clone, Copy)]
struct OsIdentity {
    uid: u32,
    gid: u32,
}

/// A PostgreSQL cluster under a directory of ours.
#[derive(Debug, Clone)]
pub struct Cluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    /// Set when we are root and the cluster runs as [`PG_OS_USER`].
    run_as: Option<OsIdentity>,
    /// Off only for throwaway test clusters: no fsync, no synchronous commit.
    durable: bool,
}

/// What [`Cluster::ensure_running`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// The data directory was created now.
    Initialized,
    /// An existing cluster was started.
    Started,
    /// The cluster was already running; it is reused.
    AlreadyRunning,
}

impl Cluster {
    /// Describes the cluster that lives in `home` (`home/pgdata`, `home/run`), finding the
    /// binaries and, when we are root, the OS user to run as. Creates nothing yet.
    pub fn at(home: &Path) -> Result<Self, ClusterError> {
        let home = std::path::absolute(home).map_err(io_error("resolving the data directory"))?;
        let bin_dir = find_bin_dir()?;
        let mut socket_dir = home.join("run");
        if socket_dir.as_os_str().len() > SOCKET_DIR_LEN_MAX {
            // Unix socket paths are short; a deep checkout gets a socket directory in the
            // temporary directory, named after the data directory so two clusters never share.
            let digest = sha2_hex(home.as_os_str().as_encoded_bytes());
            socket_dir = std::env::temp_dir().join(format!("tenet-pg-{}", &digest[..16]));
        }
        Ok(Self {
            bin_dir,
            data_dir: home.join("pgdata"),
            log_file: home.join("pgdata").join("postgresql.log"),
            socket_dir,
            run_as: None,
            durable: true,
        })
    }

    /// A cluster for tests: a crash may lose its data, so it skips fsync. Applies when
    /// the data directory is created.
    pub fn non_durable(mut self) -> Self {
        self.durable = false;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Connection options for `role` on `database` over the cluster's socket.
    pub fn connect_options(&self, role: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(SOCKET_PORT)
            .username(role)
            .database(database)
    }

    /// Initialises the data directory if it does not exist and starts the cluster if it
    /// is not running. Idempotent: a running cluster is reused.
    pub async fn ensure_running(&mut self) -> Result<Startup, ClusterError> {
        self.run_as = os_identity_for_cluster().await?;
        let home = self.data_dir.parent().expect("BUG: data dir has a parent");
        create_private_dir(home, None)?;
        if let Some(identity) = self.run_as {
            check_reachable(home, identity)?;
        }
        let mut startup = Startup::Started;
        if !self.data_dir.join("PG_VERSION").exists() {
            if self.data_dir.exists()
                && std::fs::read_dir(&self.data_dir)
                    .map_err(io_error("reading the data directory"))?
                    .next()
                    .is_some()
            {
                return Err(ClusterError::NotADataDirectory {
                    dir: self.data_dir.clone(),
                });
            }
            self.initdb().await?;
            startup = Startup::Initialized;
        }
        create_private_dir(&self.socket_dir, self.run_as)?;
        if self.is_running().await? {
            if self
                .socket_dir
                .join(format!(".s.PGSQL.{SOCKET_PORT}"))
                .exists()
            {
                return Ok(Startup::AlreadyRunning);
            }
            // Running but unreachable: something removed its socket (a temp-directory
            // cleaner). A fast restart makes PostgreSQL create it again.
            tracing::warn!(data_dir = %self.data_dir.display(), "PostgreSQL's socket is gone; restarting it");
            self.stop().await?;
        }
        self.pg_ctl(&[
            OsStr::new("start"),
            OsStr::new("--wait"),
            OsStr::new("--timeout=60"),
            OsStr::new("--silent"),
            OsStr::new("-l"),
            self.log_file.as_os_str(),
            OsStr::new("-o"),
            // The socket directory is passed at start (not written into the
            // configuration) so a moved checkout still starts.
            format!("-k '{}'", self.socket_dir.display()).as_ref(),
        ])
        .await?;
        Ok(startup)
    }

    /// Whether a postmaster is running on this data directory.
    pub async fn is_running(&self) -> Result<bool, ClusterError> {
        let status = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .output()
            .await
            .map_err(io_error("running pg_ctl status"))?;
        Ok(status.status.success())
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, committed work is kept).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        if !self.is_running().await? {
            return Ok(());
        }
        self.pg_ctl(&[
            OsStr::new("stop"),
            OsStr::new("--wait"),
            OsStr::new("--silent"),
            OsStr::new("-m"),
            OsStr::new("fast"),
        ])
        .await
    }

    /// Stops the cluster the way a crash does (`pg_ctl stop -m immediate`: no
    /// checkpoint, every session cut) and starts it again, recovering from its WAL:
    /// for crash drills and the tests that prove clients ride one out.
    pub async fn restart_immediate(&mut self) -> Result<(), ClusterError> {
        self.stop_immediate().await?;
        self.ensure_running().await.map(|_| ())
    }

    /// Stops the cluster the way a crash does (`pg_ctl stop -m immediate`) and leaves
    /// it stopped: for tests of an outage that lasts ([`Cluster::ensure_running`]
    /// brings it back, recovering from its WAL).
    pub async fn stop_immediate(&mut self) -> Result<(), ClusterError> {
        self.run_as = os_identity_for_cluster().await?;
        self.pg_ctl(&[
            OsStr::new("stop"),
            OsStr::new("--wait"),
            OsStr::new("--silent"),
            OsStr::new("-m"),
            OsStr::new("immediate"),
        ])
        .await
    }

    async fn initdb(&self) -> Result<(), ClusterError> {
        create_private_dir(&self.data_dir, self.run_as)?;
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "--username",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .output()
            .await
            .map_err(io_error("running initdb"))?;
        if !output.status.success() {
            return Err(command_failed("initdb", &output));
        }
        // Only the socket is served: no TCP listener, a socket only the cluster's OS user
        // (and root) may open. Appended settings override initdb's defaults.
        let settings = "\n# Tenet embedded cluster\n\
             listen_addresses = ''\n\
             unix_socket_permissions = 0700\n\
             max_connections = 200\n\
             shared_buffers = 256MB\n\
             log_min_messages = warning\n\
             log_statement = 'none'\n";
        let durability = if self.durable {
            "synchronous_commit = on\nfsync = on\n"
        } else {
            "synchronous_commit = off\nfsync = off\nfull_page_writes = off\n"
        };
        let conf = self.data_dir.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(io_error("reading postgresql.conf"))?;
        text.push_str(settings);
        text.push_str(durability);
        std::fs::write(&conf, text).map_err(io_error("writing postgresql.conf"))?;
        Ok(())
    }

    async fn pg_ctl(&self, args: &[&OsStr]) -> Result<(), ClusterError> {
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .await
            .map_err(io_error("running pg_ctl"))?;
        if !output.status.success() {
            let mut err = command_failed("pg_ctl", &output);
            if let ClusterError::Command { output, .. } = &mut err
                && let Ok(log) = std::fs::read_to_string(&self.log_file)
            {
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                output.push_str("\nlast lines of the server log:\n");
                for line in tail.into_iter().rev() {
                    output.push_str(line);
                    output.push('\n');
                }
            }
            return Err(err);
        }
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        // `stop` and `is_running` may be called on a cluster this process did not
        // start: as root, they must still run as the cluster's user (pg_ctl refuses
        // to run as root, which would read as "not running").
        let run_as = self.run_as.or_else(|| {
            running_as_root()
                .then(|| lookup_os_user(PG_OS_USER).ok().flatten())
                .flatten()
        });
        if let Some(identity) = run_as {
            command.uid(identity.uid).gid(identity.gid);
            // The working directory must be one the cluster's user may enter.
            command.current_dir("/");
        }
        command
    }
}

fn command_failed(command: &str, output: &std::process::Output) -> ClusterError {
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    ClusterError::Command {
        command: command.to_owned(),
        output: text.trim().to_owned(),
    }
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Creates `dir` (and its parents) if missing, mode 0700, owned by `owner` when given.
fn create_private_dir(dir: &Path, owner: Option<OsIdentity>) -> Result<(), ClusterError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error(format!("restricting {}", dir.display())))?;
    if let Some(identity) = owner {
        chown(dir, Some(identity.uid), Some(identity.gid)).map_err(io_error(format!(
            "handing {} to {PG_OS_USER}",
            dir.display()
        )))?;
    }
    Ok(())
}

/// The cluster's OS user must be able to traverse every ancestor of its home, and
/// the home itself (which is ours, 0700) must let it in: the home is made
/// traversable (0711) but not listable.
fn check_reachable(home: &Path, identity: OsIdentity) -> Result<(), ClusterError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o711)).map_err(io_error(
        format!("opening {} to {PG_OS_USER}", home.display()),
    ))?;
    for ancestor in home.ancestors().skip(1) {
        let metadata = std::fs::metadata(ancestor)
            .map_err(io_error(format!("reading {}", ancestor.display())))?;
        let mode = metadata.mode();
        let traversable = (metadata.uid() == identity.uid && mode & 0o100 != 0)
            || (metadata.gid() == identity.gid && mode & 0o010 != 0)
            || mode & 0o001 != 0;
        if !traversable {
            return Err(ClusterError::Unreachable {
                user: PG_OS_USER.to_owned(),
                dir: ancestor.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Whether this process runs as root (read without libc: the owner of /proc/self).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}

/// When we are root, the identity of [`PG_OS_USER`], creating the user if needed.
async fn os_identity_for_cluster() -> Result<Option<OsIdentity>, ClusterError> {
    if !running_as_root() {
        return Ok(None);
    }
    if let Some(identity) = lookup_os_user(PG_OS_USER)? {
        return Ok(Some(identity));
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            PG_OS_USER,
        ])
        .output()
        .await
        .map_err(|e| ClusterError::OsUser {
            reason: e.to_string(),
        })?;
    // A concurrent process may have created it first.
    if let Some(identity) = lookup_os_user(PG_OS_USER)? {
        return Ok(Some(identity));
    }
    Err(ClusterError::OsUser {
        reason: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

fn lookup_os_user(name: &str) -> Result<Option<OsIdentity>, ClusterError> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    Ok(passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(OsIdentity { uid, gid })
    }))
}

fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("TENET_PG_BIN").map(PathBuf::from) {
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::BinariesNotFound)
        };
    }
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok();
            if let Some(major) = major.filter(|major| *major >= PG_MAJOR_MIN) {
                candidates.push((major, entry.path().join("bin")));
            }
        }
    }
    candidates.sort();
    if let Some((_, dir)) = candidates
        .into_iter()
        .rev()
        .find(|(_, dir)| has_server(dir))
    {
        return Ok(dir);
    }
    if let Ok(output) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    Err(ClusterError::BinariesNotFound)
}

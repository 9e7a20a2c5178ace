//! Real servers from Debian's packages (redis-server, nginx, PostgreSQL 15,
//! a JVM HTTP server), each started by hand with a config of its own in the
//! test's directory and a port on loopback, never as the system's service:
//! how to start one, put state into it, and check that state (and that it
//! still takes more) after a checkpoint/restore or a migration. The same
//! steps run on this machine (tests/servers.rs) and inside a testbed host
//! (tests/migrate.rs), through a [`Client`].

use super::testbed::{Host, Testbed};
use super::{descendants, kill_and_reap, path_str, TestDir};
use anyhow::{bail, ensure, Context, Result};
use nix::unistd::Pid;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// PostgreSQL 15's programs, as Debian installs them.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a server's clients run: on this machine, or inside a host of the
/// testbed (its network namespace: 127.0.0.1 is that host's loopback).
#[derive(Clone, Copy)]
pub enum Client<'a> {
    Local,
    In(&'a Testbed, Host),
}

impl Client<'_> {
    /// Runs a client program (`args[0]`) to its end and returns what it
    /// printed; fails with that output when it fails.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        match self {
            Client::Local => {
                let out = Command::new(args[0])
                    .args(&args[1..])
                    .stdin(Stdio::null())
                    .output()
                    .with_context(|| format!("running {}", args[0]))?;
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                ensure!(out.status.success(), "{args:?} failed:\n{text}");
                Ok(text)
            }
            Client::In(bed, host) => {
                let (ok, text) = bed.host_exec(*host, args)?;
                ensure!(ok, "{args:?} on host {host:?} failed:\n{text}");
                Ok(text)
            }
        }
    }

    /// One HTTP GET of `path` at 127.0.0.1:`port`; returns the body.
    pub fn http_get(&self, port: u16, path: &str) -> Result<String> {
        match self {
            Client::Local => {
                let mut s = TcpStream::connect(("127.0.0.1", port))
                    .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                // One write: a server that reads the request once and
                // closes with the rest unread answers with a reset.
                let request =
                    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                s.write_all(request.as_bytes())?;
                let mut reply = String::new();
                s.read_to_string(&mut reply)?;
                let body = reply
                    .split_once("\r\n\r\n")
                    .map_or(reply.as_str(), |(_, body)| body);
                Ok(body.trim().to_string())
            }
            Client::In(bed, host) => bed.http_get(*host, &format!("http://127.0.0.1:{port}{path}")),
        }
    }
}

/// Retries `attempt` until it succeeds or the server had
/// [`START_TIMEOUT`] to come up.
fn until_up<T>(what: &str, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > START_TIMEOUT => {
                return Err(e.context(format!("{what} did not come up")))
            }
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

/// A real server and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealServer {
    /// redis-server: keys set with SET, INCR and RPUSH.
    Redis,
    /// nginx: a master and two workers (running as nobody) serving files.
    Nginx,
    /// PostgreSQL 15: the postmaster and its workers, as user postgres; a
    /// table with rows.
    Postgres,
    /// OpenJDK 17 running tests/workloads/CounterServer.java: a request
    /// count.
    Jvm,
    /// CPython's http.server running tests/workloads/counter_server.py: a
    /// request count.
    Python,
}

impl RealServer {
    /// Writes the server's config (and data: PostgreSQL's initdb, the
    /// JVM's classes) into `dir` and returns the command line of a server
    /// listening on 127.0.0.1:`port`, its first word the program.
    pub fn prepare(self, dir: &Path, port: u16) -> Result<Vec<String>> {
        let p = |path: &Path| path_str(path).map(str::to_string);
        match self {
            RealServer::Redis => {
                let data = dir.join("redis");
                fs::create_dir_all(&data)?;
                let conf = data.join("redis.conf");
                fs::write(
                    &conf,
                    format!(
                        "bind 127.0.0.1\nport {port}\ndaemonize no\nsupervised no\n\
                         save \"\"\nappendonly no\ndir {}\nlogfile \"\"\n",
                        p(&data)?
                    ),
                )?;
                Ok(vec!["redis-server".into(), p(&conf)?])
            }
            RealServer::Nginx => {
                let prefix = dir.join("nginx");
                fs::create_dir_all(prefix.join("html"))?;
                fs::create_dir_all(prefix.join("logs"))?;
                fs::create_dir_all(prefix.join("tmp"))?;
                fs::write(prefix.join("html/index.html"), "served before\n")?;
                let pre = p(&prefix)?;
                let temp: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
                    .iter()
                    .map(|t| format!("  {t}_temp_path {pre}/tmp/{t};\n"))
                    .collect();
                let conf = prefix.join("nginx.conf");
                fs::write(
                    &conf,
                    format!(
                        "daemon off;\nmaster_process on;\nworker_processes 2;\n\
                         pid {pre}/nginx.pid;\nerror_log {pre}/logs/error.log;\n\
                         events {{ worker_connections 64; }}\n\
                         http {{\n  access_log off;\n{temp}\
                         server {{ listen 127.0.0.1:{port}; root {pre}/html; }}\n}}\n"
                    ),
                )?;
                Ok(vec![
                    "nginx".into(),
                    "-p".into(),
                    pre.clone(),
                    "-c".into(),
                    p(&conf)?,
                    "-e".into(),
                    format!("{pre}/logs/error.log"),
                ])
            }
            RealServer::Postgres => {
                let root = dir.join("pg");
                let sockets = pg_socket_dir(dir);
                for d in [&root, &sockets] {
                    fs::create_dir_all(d)?;
                    let chown = Command::new("chown")
                        .args(["postgres:postgres", p(d)?.as_str()])
                        .status()?;
                    ensure!(chown.success(), "chown postgres {} failed", d.display());
                }
                let data = root.join("data");
                let out = Command::new("setpriv")
                    .args(postgres_user())
                    .arg(format!("{PG_BIN}/initdb"))
                    .args([
                        "-D",
                        &p(&data)?,
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "--no-sync",
                    ])
                    .stdin(Stdio::null())
                    .output()
                    .context("running initdb")?;
                ensure!(
                    out.status.success(),
                    "initdb failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let mut cmd = vec!["setpriv".to_string()];
                cmd.extend(postgres_user().iter().map(|s| s.to_string()));
                cmd.extend(
                    [
                        format!("{PG_BIN}/postgres"),
                        "-D".into(),
                        p(&data)?,
                        "-p".into(),
                        port.to_string(),
                        "-k".into(),
                        p(&sockets)?,
                    ]
                    .into_iter()
                    .chain(
                        [
                            "listen_addresses=127.0.0.1",
                            "fsync=off",
                            "shared_buffers=16MB",
                            // No autovacuum worker comes and goes while the
                            // test compares the PIDs of the tree.
                            "autovacuum_naptime=3600",
                        ]
                        .iter()
                        .flat_map(|c| ["-c".to_string(), c.to_string()]),
                    ),
                );
                Ok(cmd)
            }
            RealServer::Jvm => {
                let classes = dir.join("classes");
                let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/workloads/CounterServer.java");
                let out = Command::new("javac")
                    .arg("-d")
                    .arg(&classes)
                    .arg(&src)
                    .stdin(Stdio::null())
                    .output()
                    .context("running javac")?;
                ensure!(
                    out.status.success(),
                    "javac failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(vec![
                    "java".into(),
                    "-cp".into(),
                    p(&classes)?,
                    "CounterServer".into(),
                    "127.0.0.1".into(),
                    port.to_string(),
                ])
            }
            RealServer::Python => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/counter_server.py");
                Ok(vec!["python3".into(), p(&script)?, port.to_string()])
            }
        }
    }

    /// The key of the SysV segment the server makes, left behind when it
    /// is killed: PostgreSQL's is the inode of its data directory.
    pub fn sysv_key(self, dir: &Path) -> Option<i32> {
        use std::os::unix::fs::MetadataExt;
        if self != RealServer::Postgres {
            return None;
        }
        // key_t is an int: PostgreSQL truncates the inode to it.
        Some(fs::metadata(dir.join("pg/data")).ok()?.ino() as i32)
    }

    /// Directories that each host has its own of, as a real host has its
    /// own /run/postgresql: the testbed's hosts share one filesystem, but
    /// a unix socket bound on A is not in B's way on separate machines.
    pub fn host_private_dirs(self, dir: &Path) -> Vec<PathBuf> {
        match self {
            RealServer::Postgres => vec![pg_socket_dir(dir)],
            _ => Vec::new(),
        }
    }

    /// Waits until the server answers, then puts its state in.
    pub fn seed(self, c: Client, dir: &Path, port: u16) -> Result<()> {
        match self {
            RealServer::Redis => {
                until_up("redis-server", || {
                    let pong = redis(c, port, &["PING"])?;
                    ensure!(pong == "PONG", "PING answered {pong:?}");
                    Ok(())
                })?;
                expect(redis(c, port, &["SET", "greeting", "carried"])?, "OK")?;
                for i in 1..=3 {
                    expect(redis(c, port, &["INCR", "counter"])?, &i.to_string())?;
                }
                expect(redis(c, port, &["RPUSH", "list", "a", "b", "c"])?, "3")
            }
            RealServer::Nginx => {
                let body = until_up("nginx", || c.http_get(port, "/"))?;
                expect(body, "served before")
            }
            RealServer::Postgres => {
                until_up("postgres", || psql_tcp(c, port, "SELECT 1"))?;
                psql_tcp(
                    c,
                    port,
                    "CREATE TABLE items (id int PRIMARY KEY, name text); \
                     INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');",
                )?;
                expect(
                    psql_socket(c, dir, port, "SELECT count(*) FROM items")?,
                    "3",
                )
            }
            RealServer::Jvm | RealServer::Python => {
                for i in 1..=3 {
                    let got = if i == 1 {
                        until_up("the counter", || c.http_get(port, "/"))?
                    } else {
                        c.http_get(port, "/")?
                    };
                    expect(got, &i.to_string())?;
                }
                Ok(())
            }
        }
    }

    /// Checks the state [`RealServer::seed`] put in and that the server takes
    /// more (keys incremented, a file served that it never opened before,
    /// rows inserted over TCP and over the unix socket, requests counted).
    pub fn check(self, c: Client, dir: &Path, port: u16) -> Result<()> {
        match self {
            RealServer::Redis => {
                expect(redis(c, port, &["GET", "greeting"])?, "carried")?;
                expect(redis(c, port, &["INCR", "counter"])?, "4")?;
                expect(redis(c, port, &["LRANGE", "list", "0", "-1"])?, "a\nb\nc")
            }
            RealServer::Nginx => {
                expect(c.http_get(port, "/")?, "served before")?;
                fs::write(dir.join("nginx/html/after.html"), "served after\n")?;
                expect(c.http_get(port, "/after.html")?, "served after")
            }
            RealServer::Postgres => {
                expect(
                    psql_tcp(
                        c,
                        port,
                        "SELECT string_agg(name, ',' ORDER BY id) FROM items",
                    )?,
                    "one,two,three",
                )?;
                psql_tcp(c, port, "INSERT INTO items VALUES (4, 'four')")?;
                expect(
                    psql_socket(c, dir, port, "SELECT count(*) FROM items")?,
                    "4",
                )?;
                psql_socket(c, dir, port, "INSERT INTO items VALUES (5, 'five')")?;
                expect(psql_tcp(c, port, "SELECT sum(id) FROM items")?, "15")
            }
            RealServer::Jvm | RealServer::Python => expect(c.http_get(port, "/")?, "4"),
        }
    }
}

/// PostgreSQL's unix socket directory (Debian's /run/postgresql).
fn pg_socket_dir(dir: &Path) -> PathBuf {
    dir.join("pg-socket")
}

/// setpriv's arguments that run a program as user postgres.
fn postgres_user() -> [&'static str; 3] {
    ["--reuid=postgres", "--regid=postgres", "--init-groups"]
}

fn expect(got: String, want: &str) -> Result<()> {
    ensure!(
        got.trim() == want,
        "expected {want:?}, got {:?}",
        got.trim()
    );
    Ok(())
}

/// One redis-cli command at 127.0.0.1:`port`; its reply, raw.
fn redis(c: Client, port: u16, command: &[&str]) -> Result<String> {
    let port = port.to_string();
    let mut args = vec!["redis-cli", "-h", "127.0.0.1", "-p", &port];
    args.extend_from_slice(command);
    let reply = c.run(&args)?;
    if reply.starts_with("ERR") || reply.contains("Could not connect") {
        bail!("redis-cli {command:?}: {reply}");
    }
    Ok(reply.trim().to_string())
}

/// `sql` through psql connected over TCP to 127.0.0.1:`port`.
fn psql_tcp(c: Client, port: u16, sql: &str) -> Result<String> {
    psql(c, "127.0.0.1", port, sql)
}

/// `sql` through psql connected over the unix socket in the server's
/// socket directory.
fn psql_socket(c: Client, dir: &Path, port: u16, sql: &str) -> Result<String> {
    psql(c, path_str(&pg_socket_dir(dir))?, port, sql)
}

fn psql(c: Client, host: &str, port: u16, sql: &str) -> Result<String> {
    let port = port.to_string();
    c.run(&[
        "psql",
        "-X",
        "-q",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        host,
        "-p",
        &port,
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        sql,
    ])
}

/// What a local application that is not root sees: PostgreSQL's unix
/// socket file as the postmaster bound it (owned by postgres, mode 0777,
/// like the data directory's owner), and psql run as user postgres
/// connecting through it.
pub fn postgres_socket_for_non_root(dir: &Path, port: u16) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let sockets = pg_socket_dir(dir);
    let socket = sockets.join(format!(".s.PGSQL.{port}"));
    let meta = fs::symlink_metadata(&socket)?;
    let owner = fs::metadata(dir.join("pg"))?.uid();
    ensure!(
        meta.uid() == owner && meta.mode() & 0o777 == 0o777,
        "{} is owned by {} with mode {:o}, expected {owner} and 777",
        socket.display(),
        meta.uid(),
        meta.mode() & 0o777
    );
    let port = port.to_string();
    let mut args = vec!["setpriv"];
    args.extend(postgres_user());
    args.extend([
        "psql",
        "-X",
        "-tA",
        "-h",
        path_str(&sockets)?,
        "-p",
        &port,
        "-d",
        "postgres",
        "-c",
        "SELECT count(*) FROM items",
    ]);
    expect(Client::Local.run(&args)?, "5")
}

/// A port on 127.0.0.1 that nothing listens on (as the kernel picked it a
/// moment ago).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A server started on this machine by a test: killed by PID with every
/// process of its tree (PostgreSQL's workers, nginx's workers) when
/// dropped, whether original or restored.
pub struct LocalServer {
    child: Option<Child>,
    /// The root's PID, the same before and after restore.
    pub pid: Pid,
    /// Every PID of the tree seen so far.
    seen: Vec<Pid>,
    /// The key of a SysV segment to remove once every process is gone.
    sysv_key: Option<i32>,
}

impl LocalServer {
    /// Starts `argv` with only stdin, stdout and stderr open (through
    /// bash, which closes the fds this test inherited, such as cargo's
    /// jobserver pipe, which ferry would rightly refuse), output to
    /// DIR/server.out.
    pub fn start(dir: &TestDir, server: RealServer, argv: &[String]) -> Result<Self> {
        let out = fs::File::create(dir.path().join("server.out"))?;
        let child = Command::new("bash")
            .args([
                "-c",
                "for fd in /proc/$$/fd/*; do fd=${fd##*/}; \
                 if [ \"$fd\" -gt 2 ]; then eval \"exec $fd>&-\"; fi; done 2>/dev/null; \
                 exec 2>&1; exec \"$@\"",
                "bash",
            ])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .spawn()
            .with_context(|| format!("starting {}", argv[0]))?;
        let pid = Pid::from_raw(child.id() as i32);
        Ok(LocalServer {
            child: Some(child),
            pid,
            seen: vec![pid],
            sysv_key: server.sysv_key(dir.path()),
        })
    }

    /// The tree's PIDs once they stay the same for 200 ms (a PostgreSQL
    /// backend whose client just left is gone by then), root first.
    pub fn settled_tree(&mut self) -> Vec<Pid> {
        let start = Instant::now();
        let mut last = self.tree();
        loop {
            sleep(Duration::from_millis(200));
            let now = self.tree();
            if now == last || start.elapsed() > Duration::from_secs(5) {
                return now;
            }
            last = now;
        }
    }

    /// The tree's PIDs now, root first, the rest sorted.
    pub fn tree(&mut self) -> Vec<Pid> {
        let mut kids = descendants(self.pid);
        kids.sort();
        for k in &kids {
            if !self.seen.contains(k) {
                self.seen.push(*k);
            }
        }
        [vec![self.pid], kids].concat()
    }

    /// Waits until the checkpoint has killed the whole tree, reaping what
    /// became ours, so that restore finds every PID free.
    pub fn wait_gone(&mut self, pids: &[Pid]) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        kill_and_reap(pids);
        let left: Vec<Pid> = pids
            .iter()
            .copied()
            .filter(|p| PathBuf::from(format!("/proc/{p}")).exists())
            .collect();
        ensure!(
            left.is_empty(),
            "processes {left:?} outlived the checkpoint"
        );
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.tree();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_and_reap(&self.seen);
        if let Some(key) = self.sysv_key {
            remove_unattached_segment(key);
        }
    }
}

/// Removes the SysV segment with key `key` if no process has it attached
/// (the server that made it is gone).
fn remove_unattached_segment(key: i32) {
    let Ok(text) = fs::read_to_string("/proc/sysvipc/shm") else {
        return;
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first().and_then(|k| k.parse::<i32>().ok()) == Some(key) && f.get(6) == Some(&"0") {
            let _ = Command::new("ipcrm").args(["-m", f[1]]).status();
        }
    }
}

//! `mailgate-loadgen cluster`: the VPN cost of a front end on every box.
//!
//! Models B boxes on loopback: box i is 127.0.1.(i+1) and runs a simulated
//! back end and a mailgate front end (one worker) with the same static map,
//! user k living on box k mod B. Each session picks a front end uniformly at
//! random, like DNS round robin on `mail.domain.org`, logs in as a random
//! user, fetches and checks a message, and logs out. A session whose front
//! end is not its mailbox's box sends every relayed byte over the VPN
//! (back end on box j → front end on box i).
//!
//! The VPN share comes from mailgate's own `mailgate_backend_bytes_total`
//! per back end on each front end (a back end on another box's address is
//! VPN traffic), cross-checked with what the clients received in local and
//! remote sessions. Expected: (B−1)/B. The projection scales the measured
//! share and bytes per session to a population and traffic profile, next to
//! the per-box-hostname alternative (clients go straight to their own box:
//! no VPN bytes, but every user configures their box's name and a mailbox
//! move means reconfiguring clients).

use crate::client::{Conn, Endpoint, ErrorKind, Failure, Protocol, TlsMode};
use anyhow::{bail, Context};
use mailgate::simulated_backend::{Mailbox, SimulatedBackend};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw";

/// Loopback address of box `i` (0-based): 127.0.1.(i+1).
fn box_address(i: usize) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, (i + 1) as u8))
}
const MIB: f64 = 1024.0 * 1024.0;

#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Boxes (each a front end and a back end).
    #[arg(long, default_value_t = 3)]
    boxes: usize,
    /// Users, spread over the boxes (user k on box k mod B).
    #[arg(long, default_value_t = 300)]
    users: u64,
    /// Sessions to run (the count bound).
    #[arg(long, default_value_t = 300)]
    sessions: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Size of the message each session fetches.
    #[arg(long, default_value_t = 1024 * 1024)]
    message_size: usize,
    /// Fetches per session.
    #[arg(long, default_value_t = 1)]
    fetches_per_session: usize,
    /// Time bound of the run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    duration: Duration,
    /// Seed of the front-end and user choices (same seed, same sessions).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The mailgate binary (default: next to this one).
    #[arg(long)]
    mailgate: Option<PathBuf>,
    /// Projection: users of the real deployment.
    #[arg(long, default_value_t = 100_000)]
    population: u64,
    /// Projection: sessions per user and day.
    #[arg(long, default_value_t = 20.0)]
    sessions_per_user_day: f64,
    /// Projection: MiB relayed per session (default: as measured here).
    #[arg(long)]
    mib_per_session: Option<f64>,
    /// Projection: peak-hour rate over the daily average.
    #[arg(long, default_value_t = 3.0)]
    peak_factor: f64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// What the run measured and the projection.
#[derive(Debug, serde::Serialize)]
pub struct ClusterReport {
    pub boxes: usize,
    pub sessions_attempted: u64,
    pub sessions_ok: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// From mailgate's counters: bytes between a front end and a back end on
    /// another box, and on the same box (both directions).
    pub vpn_bytes: u64,
    pub local_bytes: u64,
    pub vpn_share: f64,
    pub expected_vpn_share: f64,
    /// From the clients: share of received bytes in sessions whose front end
    /// was not their mailbox's box.
    pub client_remote_share: f64,
    pub remote_sessions: u64,
    pub vpn_bytes_per_session: f64,
    pub mib_per_session: f64,
    pub projection: Projection,
}

/// Scaled to a deployment.
#[derive(Debug, serde::Serialize)]
pub struct Projection {
    pub population: u64,
    pub sessions_per_user_day: f64,
    pub mib_per_session: f64,
    pub peak_factor: f64,
    /// Front end on every box, random box per session (mailgate).
    pub proxy_vpn_mbit_avg: f64,
    pub proxy_vpn_mbit_peak: f64,
    pub proxy_vpn_gib_per_day: f64,
    /// Per-box host names: clients reach their box directly.
    pub per_box_vpn_mbit_avg: f64,
    pub per_box_vpn_mbit_peak: f64,
    /// What clients receive in total (the same either way).
    pub client_mbit_avg: f64,
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    if !(2..=100).contains(&args.boxes) {
        bail!("--boxes must be between 2 and 100");
    }
    if args.sessions == 0 || args.sessions > 1_000_000 || args.users == 0 {
        bail!("--sessions must be 1 ..= 1 000 000 and --users at least 1");
    }
    let mailgate = match &args.mailgate {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("mailgate"))
            .context("locating mailgate")?,
    };
    if !mailgate.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p mailgate) or pass --mailgate",
            mailgate.display()
        );
    }
    let work = WorkDir::new()?;
    let mut backends = Vec::new();
    for b in 0..args.boxes {
        backends.push(
            SimulatedBackend::start_on(
                box_address(b),
                1,
                Mailbox {
                    password: PASSWORD.into(),
                    message_sizes: vec![args.message_size],
                    corrupt: false,
                },
            )
            .with_context(|| format!("starting the back end of box {b} on {}", box_address(b)))?,
        );
    }
    let mut map = String::new();
    for k in 0..args.users {
        let home = (k % args.boxes as u64) as usize;
        map.push_str(&format!("{}  {}\n", user(k), backends[home].imap));
    }
    std::fs::write(work.0.join("users.map"), map)?;
    let mut fronts = Vec::new();
    for b in 0..args.boxes {
        fronts.push(FrontEnd::start(&mailgate, &work.0, b)?);
    }
    let started = Instant::now();
    let outcome = drive(&args, &fronts)?;
    let seconds = started.elapsed().as_secs_f64();
    let sessions_ended = outcome.attempted;
    let (vpn_bytes, local_bytes) = relayed_bytes(&fronts, sessions_ended)?;
    drop(fronts);
    drop(backends);

    let b = args.boxes as f64;
    let total = (vpn_bytes + local_bytes).max(1) as f64;
    let vpn_share = vpn_bytes as f64 / total;
    let client_total = (outcome.local_bytes + outcome.remote_bytes).max(1) as f64;
    let ok = outcome.ok.max(1) as f64;
    let mib_per_session = total / ok / MIB;
    let projection = project(&args, vpn_share, mib_per_session);
    let report = ClusterReport {
        boxes: args.boxes,
        sessions_attempted: outcome.attempted,
        sessions_ok: outcome.ok,
        errors_by_kind: outcome
            .errors
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), *v))
            .collect(),
        first_error: outcome.first_error,
        seconds,
        vpn_bytes,
        local_bytes,
        vpn_share,
        expected_vpn_share: (b - 1.0) / b,
        client_remote_share: outcome.remote_bytes as f64 / client_total,
        remote_sessions: outcome.remote_sessions,
        vpn_bytes_per_session: vpn_bytes as f64 / ok,
        mib_per_session,
        projection,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", text(&report));
    }
    if outcome.mismatches > 0 {
        bail!(
            "{} message bodies differed from what the back end holds",
            outcome.mismatches
        );
    }
    Ok(())
}

fn user(k: u64) -> String {
    format!("user{k}@example.org")
}

fn project(args: &ClusterArgs, vpn_share: f64, measured_mib: f64) -> Projection {
    let mib = args.mib_per_session.unwrap_or(measured_mib);
    let mib_per_day = args.population as f64 * args.sessions_per_user_day * mib;
    let mbit = |mib_per_day: f64| mib_per_day * MIB * 8.0 / 1e6 / 86_400.0;
    let client = mbit(mib_per_day);
    Projection {
        population: args.population,
        sessions_per_user_day: args.sessions_per_user_day,
        mib_per_session: mib,
        peak_factor: args.peak_factor,
        proxy_vpn_mbit_avg: client * vpn_share,
        proxy_vpn_mbit_peak: client * vpn_share * args.peak_factor,
        proxy_vpn_gib_per_day: mib_per_day * vpn_share / 1024.0,
        per_box_vpn_mbit_avg: 0.0,
        per_box_vpn_mbit_peak: 0.0,
        client_mbit_avg: client,
    }
}

fn text(r: &ClusterReport) -> String {
    let p = &r.projection;
    let mut s = format!(
        "cluster of {} boxes: {} of {} sessions ok in {:.1} s{}\n",
        r.boxes,
        r.sessions_ok,
        r.sessions_attempted,
        r.seconds,
        if r.errors_by_kind.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", r.errors_by_kind)
        }
    );
    s += &format!(
        "  relayed (mailgate counters): {:.1} MiB over the VPN, {:.1} MiB local\n",
        r.vpn_bytes as f64 / MIB,
        r.local_bytes as f64 / MIB
    );
    s += &format!(
        "  VPN share {:.3} (expected (B-1)/B = {:.3}); clients' remote share {:.3} over {} remote sessions\n",
        r.vpn_share, r.expected_vpn_share, r.client_remote_share, r.remote_sessions
    );
    s += &format!(
        "  VPN bytes per session {:.0} ({:.3} MiB relayed per session)\n\n",
        r.vpn_bytes_per_session, r.mib_per_session
    );
    s += &format!(
        "Projection: {} users × {} sessions/day × {:.3} MiB/session, peak {}× average\n\n",
        p.population, p.sessions_per_user_day, p.mib_per_session, p.peak_factor
    );
    s += "| deployment | VPN Mbit/s avg | VPN Mbit/s peak | VPN GiB/day | client Mbit/s avg |\n";
    s += "| --- | --- | --- | --- | --- |\n";
    s += &format!(
        "| front end on every box (mailgate, random box) | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        p.proxy_vpn_mbit_avg, p.proxy_vpn_mbit_peak, p.proxy_vpn_gib_per_day, p.client_mbit_avg
    );
    s += &format!(
        "| per-box host names (no proxy hop) | {:.1} | {:.1} | 0.0 | {:.1} |\n",
        p.per_box_vpn_mbit_avg, p.per_box_vpn_mbit_peak, p.client_mbit_avg
    );
    s += "\nPer-box host names cost no VPN bytes but tie every client's settings to a box: moving a mailbox means reconfiguring its clients (or per-user DNS).\n";
    s
}

/// Removes its directory when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("mailgate-cluster.{}.{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mailgate process for one box (killed when dropped).
struct FrontEnd {
    child: Child,
    imap: SocketAddr,
    admin: SocketAddr,
    ip: IpAddr,
}

impl FrontEnd {
    fn start(mailgate: &Path, dir: &Path, b: usize) -> anyhow::Result<Self> {
        let ip = box_address(b);
        let config = dir.join(format!("box{b}.toml"));
        let ready = dir.join(format!("box{b}.ready"));
        std::fs::write(
            &config,
            format!(
                r#"[[listen]]
protocol = "imap"
address = "{ip}:0"

[directory]
kind = "static"
map = "{map}"

[backend]
connect_timeout = "5s"
login_timeout = "10s"

[runtime]
workers = 1
pin_workers = false
shutdown_grace = "1s"

[limits]
max_failures_per_address = 0

[admin]
address = "{ip}:0"
"#,
                map = dir.join("users.map").display()
            ),
        )?;
        let log = std::fs::File::create(dir.join(format!("box{b}.log")))?;
        let mut child = Command::new(mailgate)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", mailgate.display()))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break text;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("mailgate for box {b} exited with {status}; see its log");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("mailgate for box {b} did not become ready");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let field = |name: &str| -> anyhow::Result<SocketAddr> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .with_context(|| format!("no {name} address in the ready file of box {b}"))
        };
        Ok(Self {
            imap: field("imap ")?,
            admin: field("admin ")?,
            child,
            ip,
        })
    }

    fn metrics(&self) -> anyhow::Result<String> {
        let mut s = TcpStream::connect(self.admin)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Outcome {
    attempted: u64,
    ok: u64,
    errors: BTreeMap<ErrorKind, u64>,
    first_error: Option<String>,
    mismatches: u64,
    local_bytes: u64,
    remote_bytes: u64,
    remote_sessions: u64,
}

/// Runs the sessions; returns what the clients saw.
fn drive(args: &ClusterArgs, fronts: &[FrontEnd]) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let endpoints: Vec<Endpoint> = fronts
        .iter()
        .map(|f| Endpoint {
            target: f.imap,
            protocol: Protocol::Imap,
            tls: TlsMode::None,
            tls_config: None,
            server_name: rustls::pki_types::ServerName::try_from("localhost").expect("valid"),
        })
        .collect();
    let expected = Arc::new(mailgate::simulated_backend::message(1, args.message_size));
    let next = Arc::new(AtomicU64::new(0));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let deadline = tokio::time::Instant::now() + args.duration;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..args.clients.max(1))
            .map(|_| {
                let (endpoints, expected, next, outcome) = (
                    endpoints.clone(),
                    expected.clone(),
                    next.clone(),
                    outcome.clone(),
                );
                let args = args.clone();
                tokio::spawn(async move {
                    loop {
                        let s = next.fetch_add(1, Ordering::Relaxed);
                        if s >= args.sessions || tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        let mut rng =
                            fastrand::Rng::with_seed(args.seed.wrapping_mul(1_000_003) ^ s);
                        let front = rng.usize(0..endpoints.len());
                        let k = rng.u64(0..args.users);
                        let remote = (k % args.boxes as u64) as usize != front;
                        let session = tokio::time::timeout(Duration::from_secs(60), async {
                            let mut conn = Conn::open(&endpoints[front], None).await?;
                            conn.login(&user(k), PASSWORD).await?;
                            conn.select().await?;
                            for _ in 0..args.fetches_per_session {
                                conn.fetch(1, &expected).await?;
                            }
                            conn.logout().await?;
                            Ok::<_, Failure>(conn.bytes_in)
                        })
                        .await
                        .unwrap_or_else(|_| {
                            Err(Failure::new(ErrorKind::Timeout, "session over 60 s"))
                        });
                        let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
                        o.attempted += 1;
                        match session {
                            Ok(bytes) => {
                                o.ok += 1;
                                if remote {
                                    o.remote_bytes += bytes;
                                    o.remote_sessions += 1;
                                } else {
                                    o.local_bytes += bytes;
                                }
                            }
                            Err(e) => {
                                *o.errors.entry(e.kind).or_default() += 1;
                                if e.kind == ErrorKind::Mismatch {
                                    o.mismatches += 1;
                                }
                                o.first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(outcome)
}

/// Sums `mailgate_backend_bytes_total` over the front ends into (VPN,
/// local), once every front end has recorded its sessions' ends.
fn relayed_bytes(fronts: &[FrontEnd], sessions: u64) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ended = 0.0;
        let mut vpn = 0u64;
        let mut local = 0u64;
        for front in fronts {
            let text = front.metrics()?;
            let parsed = parse_metrics(&text);
            ended += parsed.sessions_ended;
            for (backend, bytes) in parsed.backend_bytes {
                if backend.ip() == front.ip {
                    local += bytes;
                } else {
                    vpn += bytes;
                }
            }
        }
        if ended as u64 >= sessions || Instant::now() > deadline {
            return Ok((vpn, local));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Parsed {
    sessions_ended: f64,
    backend_bytes: HashMap<SocketAddr, u64>,
}

fn parse_metrics(text: &str) -> Parsed {
    let mut parsed = Parsed {
        sessions_ended: 0.0,
        backend_bytes: HashMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("mailgate_session_duration_seconds_count{") {
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                parsed.sessions_ended += v;
            }
        } else if let Some(rest) = line.strip_prefix("mailgate_backend_bytes_total{backend=\"") {
            let Some((addr, tail)) = rest.split_once('"') else {
                continue;
            };
            let (Ok(addr), Some(Ok(v))) = (
                addr.parse::<SocketAddr>(),
                tail.rsplit(' ').next().map(str::parse::<f64>),
            ) else {
                continue;
            };
            *parsed.backend_bytes.entry(addr).or_default() += v as u64;
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_bytes_are_summed_per_back_end() {
        let text = "# TYPE x counter\nmailgate_backend_bytes_total{backend=\"127.0.1.2:4000\",direction=\"to_backend\"} 10\nmailgate_backend_bytes_total{backend=\"127.0.1.2:4000\",direction=\"to_client\"} 1000\nmailgate_session_duration_seconds_count{protocol=\"imap\"} 3\nmailgate_session_duration_seconds_count{protocol=\"pop3\"} 1\n";
        let p = parse_metrics(text);
        assert_eq!(p.sessions_ended, 4.0);
        assert_eq!(p.backend_bytes[&"127.0.1.2:4000".parse().unwrap()], 1010);
    }

    #[test]
    fn the_projection_scales_the_share() {
        let args = ClusterArgs {
            boxes: 3,
            users: 1,
            sessions: 1,
            clients: 1,
            message_size: 1,
            fetches_per_session: 1,
            duration: Duration::from_secs(1),
            seed: 1,
            mailgate: None,
            population: 86_400,
            sessions_per_user_day: 1.0,
            mib_per_session: Some(1.0),
            peak_factor: 2.0,
            json: false,
        };
        let p = project(&args, 0.5, 99.0);
        // 86 400 MiB/day = 1 MiB/s = 8.388608 Mbit/s to clients, half over the VPN.
        assert!((p.client_mbit_avg - 8.388608).abs() < 1e-9);
        assert!((p.proxy_vpn_mbit_avg - 4.194304).abs() < 1e-9);
        assert!((p.proxy_vpn_mbit_peak - 8.388608).abs() < 1e-9);
        assert_eq!(p.per_box_vpn_mbit_avg, 0.0);
    }
}

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

//!
//! With `--corpus` the back ends serve mail built from real files on this
//! system (the test kit's corpus) and each session first fetches the
//! smallest message (its latency is the "small FETCH"), then random ones.
//! With `--compress compare` the sessions run twice, through listeners
//! with uncompressed and with compressed back-end legs.
//!
//! `front_end.rs` runs the mailgate processes and reads their counters;
//! `projection.rs` scales the measurement to a deployment and words it;
//! `compression.rs` measures and compares the compression modes.

mod compression;
mod front_end;
mod moves;
mod projection;

use crate::client::{Conn, Endpoint, ErrorKind, Failure, Protocol, TlsMode};
use anyhow::{bail, Context};
pub use compression::CompressMode;
use compression::{PhaseFigures, Snapshot};
use front_end::FrontEnd;
use mailgate::simulated_backend::{Mailbox, SimulatedBackend};
use mailgate_testkit::slapd::{self, Person, Slapd};
pub use moves::MoveMode;
use moves::{box_host, mover, MoveReport, Moves};
use projection::{project, text, ClusterReport, LdapFigures, MIB};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw";
/// Bound on one session of the run.
const SESSION_LIMIT: Duration = Duration::from_secs(60);

/// Loopback address of box `i` (0-based): 127.0.1.(i+1).
fn box_address(i: usize) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, (i + 1) as u8))
}

#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Boxes (each a front end and a back end).
    #[arg(long, default_value_t = 3)]
    pub(super) boxes: usize,
    /// Users, spread over the boxes (user k on box k mod B).
    #[arg(long, default_value_t = 300)]
    pub(super) users: u64,
    /// Sessions to run (the count bound).
    #[arg(long, default_value_t = 300)]
    pub(super) sessions: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub(super) clients: usize,
    /// Size of the message each session fetches.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub(super) message_size: usize,
    /// Fetches per session.
    #[arg(long, default_value_t = 1)]
    pub(super) fetches_per_session: usize,
    /// Time bound of the run (of each phase with --compress compare).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub(super) duration: Duration,
    /// Serve a corpus built from real files on this system (text, HTML,
    /// base64 images, PDFs and archives; docs/loadgen.md) instead of one
    /// synthetic message of --message-size.
    #[arg(long)]
    pub(super) corpus: bool,
    #[command(flatten)]
    pub(super) corpus_args: crate::cli::CorpusArgs,
    /// Back-end legs: uncompressed, compressed (COMPRESS=DEFLATE), or both
    /// one after the other in the same run.
    #[arg(long, value_enum, default_value_t = CompressMode::Off)]
    pub(super) compress: CompressMode,
    /// The front ends' `[backend] compress_level` (default: mailgate's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub(super) compress_level: Option<u32>,
    /// Seed of the front-end and user choices (same seed, same sessions).
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// The mailgate binary (default: next to this one).
    #[arg(long)]
    pub(super) mailgate: Option<PathBuf>,
    /// Projection: users of the real deployment.
    #[arg(long, default_value_t = 100_000)]
    pub(super) population: u64,
    /// Projection: sessions per user and day.
    #[arg(long, default_value_t = 20.0)]
    pub(super) sessions_per_user_day: f64,
    /// Projection: MiB relayed per session (default: as measured here).
    #[arg(long)]
    pub(super) mib_per_session: Option<f64>,
    /// Projection: peak-hour rate over the daily average.
    #[arg(long, default_value_t = 3.0)]
    pub(super) peak_factor: f64,
    /// Print the result as JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) routes: RouteArgs,
}

/// Where the front ends' routes come from, and mailbox moves.
#[derive(clap::Args, Clone, Debug)]
pub struct RouteArgs {
    /// The front ends' directory: the same static map, or a real slapd
    /// started for the run (needs `slapd` and `ldap-utils`).
    #[arg(long, value_enum, default_value_t = DirectoryKind::Static)]
    pub(super) directory: DirectoryKind,
    /// Mailbox moves to make during the run, one after the other (needs
    /// `--directory ldap`); the run fails if a login reached an old box
    /// after the hold or a session stayed there.
    #[arg(long, default_value_t = 0)]
    pub(super) moves: u64,
    /// How moves are made.
    #[arg(long, value_enum, default_value_t = MoveMode::Hold)]
    pub(super) move_mode: MoveMode,
    /// LDAP: keep a content-sync watch open (`[directory] watch`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(super) watch: bool,
    /// LDAP: how long the front ends cache a route.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub(super) ttl: Duration,
}

impl Default for RouteArgs {
    fn default() -> Self {
        Self {
            directory: DirectoryKind::Static,
            moves: 0,
            move_mode: MoveMode::Hold,
            watch: true,
            ttl: Duration::from_secs(60),
        }
    }
}

/// The front ends' directory.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DirectoryKind {
    /// One static map.
    Static,
    /// A real slapd with `syncprov`.
    Ldap,
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
    if args.compress == CompressMode::Compare && args.routes.moves > 0 {
        bail!("--moves runs in one phase: not with --compress compare");
    }
    let work = tempfile::Builder::new()
        .prefix("mailgate-cluster.")
        .tempdir()?;
    let corpus = corpus(&args)?;
    let messages: Arc<Vec<Vec<u8>>> = Arc::new(match &corpus {
        Some(corpus) => corpus.messages.clone(),
        None => vec![mailgate::simulated_backend::message(1, args.message_size)],
    });
    let mut backends = Vec::new();
    for b in 0..args.boxes {
        backends.push(
            SimulatedBackend::start_on(
                box_address(b),
                1,
                Mailbox {
                    password: PASSWORD.into(),
                    message_sizes: vec![args.message_size],
                    messages: messages.to_vec(),
                    compress: args.compress != CompressMode::Off,
                    corrupt: false,
                    uid_validity: b as u32 + 1,
                },
            )
            .with_context(|| format!("starting the back end of box {b} on {}", box_address(b)))?,
        );
    }
    let (directory, slapd) = directory(&args, work.path(), &backends)?;
    let mut fronts = Vec::new();
    for b in 0..args.boxes {
        fronts.push(FrontEnd::start(
            &mailgate,
            work.path(),
            b,
            box_address(b),
            &directory,
            args.compress.phases(),
            args.compress_level,
        )?);
    }
    let moves = slapd
        .as_ref()
        .filter(|_| args.routes.moves > 0)
        .map(|slapd| {
            Arc::new(Moves {
                slapd: slapd.clone(),
                fronts: fronts.iter().map(|f| endpoint(f.imap)).collect(),
                boxes: args.boxes,
                password: PASSWORD,
            })
        });
    let mut phases = Vec::new();
    let mut first = None;
    let mut ended = 0;
    let mut mismatches = 0;
    let mut before = snapshot(&fronts)?;
    for (i, mode) in args.compress.phases().iter().enumerate() {
        if args.compress == CompressMode::Compare {
            // Each phase starts with the same sockets around: thousands of
            // TIME_WAIT entries left by the phase before make every connect
            // dearer (the kernel's port search), and the later phase pays.
            compression::settle_time_wait();
            before = snapshot(&fronts)?;
        }
        let started = Instant::now();
        let endpoints: Vec<Endpoint> = fronts.iter().map(|f| endpoint(f.listeners[i])).collect();
        let (outcome, moved) = drive(&args, &endpoints, moves.clone(), &messages)?;
        let seconds = started.elapsed().as_secs_f64();
        ended += outcome.attempted;
        mismatches += outcome.mismatches;
        let after = wait_for_ends(&fronts, ended)?;
        phases.push(compression::figures(
            &args, mode, &outcome, seconds, before, after,
        ));
        if first.is_none() {
            first = Some((outcome, moved, seconds, before, after));
        }
        before = after;
    }
    let (outcome, moved, seconds, start, end) = first.context("no phase ran")?;
    let (vpn_bytes, local_bytes) = (
        end.vpn_wire - start.vpn_wire,
        end.local_wire - start.local_wire,
    );
    let ldap = match &slapd {
        Some(slapd) => Some(ldap_figures(&args, slapd, &fronts)?),
        None => None,
    };
    drop(fronts);
    drop(backends);

    let mut report = report(&args, &outcome, seconds, vpn_bytes, local_bytes);
    report.ldap = ldap;
    report.moves = moved;
    report.corpus = corpus
        .as_ref()
        .map(mailgate_testkit::corpus::Corpus::summary);
    let compared = args.corpus || args.compress != CompressMode::Off;
    if compared {
        report.compression = phases;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", text(&report));
        if let Some(corpus) = &report.corpus {
            println!("\nCorpus: {corpus}");
        }
        if compared {
            print!("{}", compression::text(&report.compression));
        }
    }
    if mismatches > 0 {
        bail!("{mismatches} message bodies differed from what the back end holds");
    }
    if let Some(moves) = report.moves.as_ref().filter(|m| !m.clean()) {
        bail!(
            "mailbox moves lost track: {} logins on an old box after the hold, {} sessions left there, {} front ends that never followed{}",
            moves.old_box_logins_after_hold,
            moves.sessions_left_on_old_box,
            moves.probe_timeouts,
            moves
                .first_error
                .as_deref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The corpus of `--corpus`, built once for every box.
fn corpus(args: &ClusterArgs) -> anyhow::Result<Option<mailgate_testkit::corpus::Corpus>> {
    if !args.corpus {
        return Ok(None);
    }
    Ok(Some(args.corpus_args.build()?))
}

/// The front ends' `[directory]` section, and the slapd behind it (LDAP).
fn directory(
    args: &ClusterArgs,
    work: &std::path::Path,
    backends: &[SimulatedBackend],
) -> anyhow::Result<(String, Option<Arc<Slapd>>)> {
    let routes = &args.routes;
    if routes.moves > 0 && routes.directory != DirectoryKind::Ldap {
        bail!("--moves needs --directory ldap");
    }
    if routes.moves > 0 && !routes.watch && routes.move_mode == MoveMode::Hold {
        bail!("--moves with --move-mode hold needs --watch true (held sessions are ended by the watch)");
    }
    if routes.directory == DirectoryKind::Static {
        let mut map = String::new();
        for k in 0..args.users {
            let home = (k % args.boxes as u64) as usize;
            map.push_str(&format!("{}  {}\n", user(k), backends[home].imap));
        }
        std::fs::write(work.join("users.map"), map)?;
        let section = format!(
            "[directory]\nkind = \"static\"\nmap = \"{}\"\n",
            work.join("users.map").display()
        );
        return Ok((section, None));
    }
    let mut names: Vec<(String, usize)> = (0..args.users)
        .map(|k| (user(k), (k % args.boxes as u64) as usize))
        .collect();
    names.extend((0..routes.moves).map(|i| (mover(i), (i as usize) % args.boxes)));
    let hosts: Vec<String> = (0..args.boxes).map(box_host).collect();
    let people: Vec<Person> = names
        .iter()
        .map(|(mail, home)| Person {
            mail,
            host: &hosts[*home],
            status: "active",
        })
        .collect();
    let slapd = Slapd::start(&people, slapd::Options::default())
        .context("starting slapd for --directory ldap")?;
    let mut section = format!(
        "[directory]\nkind = \"ldap\"\nurl = \"{}/{}?mail,host?sub?(&(mail=%s)(status=active))\"\n\
         timeout = \"5s\"\nwatch = {}\nhold_filter = \"(status=moving)\"\n\
         [directory.cache]\nttl = \"{}\"\n[directory.hosts]\n",
        slapd.url(),
        slapd::PEOPLE,
        routes.watch,
        humantime::format_duration(routes.ttl)
    );
    for (b, backend) in backends.iter().enumerate() {
        section.push_str(&format!("{} = \"{}\"\n", box_host(b), backend.imap));
    }
    Ok((section, Some(Arc::new(slapd))))
}

/// LDAP searches per login, with the watch's own searches apart.
fn ldap_figures(
    args: &ClusterArgs,
    slapd: &Slapd,
    fronts: &[FrontEnd],
) -> anyhow::Result<LdapFigures> {
    let searches = slapd.searches();
    // The watch searches with `%s` as `*`: `(mail=*)`.
    let watch = searches.iter().filter(|s| s.contains("(mail=*)")).count() as u64;
    let lookups = searches.len() as u64 - watch;
    let mut logins = 0.0;
    for front in fronts {
        logins += front.counts()?.logins;
    }
    Ok(LdapFigures {
        watch: args.routes.watch,
        ttl_seconds: args.routes.ttl.as_secs_f64(),
        lookups,
        watch_searches: watch,
        logins: logins as u64,
        lookups_per_login: lookups as f64 / logins.max(1.0),
    })
}
/// What was measured, with the projection.
fn report(
    args: &ClusterArgs,
    outcome: &Outcome,
    seconds: f64,
    vpn_bytes: u64,
    local_bytes: u64,
) -> ClusterReport {
    let b = args.boxes as f64;
    let total = (vpn_bytes + local_bytes).max(1) as f64;
    let vpn_share = vpn_bytes as f64 / total;
    let client_total = (outcome.local_bytes + outcome.remote_bytes).max(1) as f64;
    let ok = outcome.ok.max(1) as f64;
    let mib_per_session = total / ok / MIB;
    let projection = project(args, vpn_share, mib_per_session);
    ClusterReport {
        boxes: args.boxes,
        sessions_attempted: outcome.attempted,
        sessions_ok: outcome.ok,
        errors_by_kind: outcome
            .errors
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), *v))
            .collect(),
        first_error: outcome.first_error.clone(),
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
        ldap: None,
        moves: None,
        corpus: None,
        compression: Vec::new(),
    }
}

fn endpoint(target: std::net::SocketAddr) -> Endpoint {
    Endpoint {
        target,
        protocol: Protocol::Imap,
        mechanism: crate::client::Mechanism::Native,
        tls: TlsMode::None,
        tls_config: None,
        server_name: rustls::pki_types::ServerName::try_from("localhost").expect("valid"),
    }
}

fn user(k: u64) -> String {
    format!("user{k}@example.org")
}
struct Outcome {
    attempted: u64,
    ok: u64,
    errors: BTreeMap<ErrorKind, u64>,
    first_error: Option<String>,
    mismatches: u64,
    local_bytes: u64,
    remote_bytes: u64,
    remote_sessions: u64,
    /// Each session's small `FETCH` (corpus runs), µs.
    small_fetch: hdrhistogram::Histogram<u64>,
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            attempted: 0,
            ok: 0,
            errors: BTreeMap::new(),
            first_error: None,
            mismatches: 0,
            local_bytes: 0,
            remote_bytes: 0,
            remote_sessions: 0,
            small_fetch: crate::stats::histogram(),
        }
    }
}

/// Runs the sessions, and the moves beside them; returns what the clients
/// saw and what the moves measured.
fn drive(
    args: &ClusterArgs,
    endpoints: &[Endpoint],
    moves: Option<Arc<Moves>>,
    messages: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<(Outcome, Option<MoveReport>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let moving = moves.map(|m| runtime.spawn(m.run(args.routes.moves, args.routes.move_mode)));
    let expected = messages.clone();
    let next = Arc::new(AtomicU64::new(0));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let deadline = tokio::time::Instant::now() + args.duration;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..args.clients.max(1))
            .map(|_| {
                let (endpoints, expected, next, outcome) = (
                    endpoints.to_vec(),
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
                        let session =
                            one_session(&args, &endpoints[front], k, &expected, &mut rng).await;
                        let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
                        o.attempted += 1;
                        match session {
                            Ok((bytes, small)) => {
                                o.ok += 1;
                                if let Some(small) = small {
                                    let _ = o.small_fetch.record(small.as_micros().max(1) as u64);
                                }
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
    let moved = match moving {
        Some(task) => Some(runtime.block_on(task).context("the moves' task")?),
        None => None,
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    let outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((outcome, moved))
}
/// One session as user `k` through `endpoint`: login, select, fetches
/// checked against `messages`, logout; the bytes received, and with more
/// than one message the latency of the first fetch (the smallest message)
/// before the others (random ones).
async fn one_session(
    args: &ClusterArgs,
    endpoint: &Endpoint,
    k: u64,
    messages: &[Vec<u8>],
    rng: &mut fastrand::Rng,
) -> Result<(u64, Option<Duration>), Failure> {
    let session = async {
        let mut conn = Conn::open(endpoint, None).await?;
        conn.login(&user(k), PASSWORD).await?;
        conn.select().await?;
        let mut small = None;
        if messages.len() > 1 {
            let smallest = (0..messages.len())
                .min_by_key(|&i| messages[i].len())
                .unwrap_or(0);
            let started = Instant::now();
            conn.fetch(smallest + 1, &messages[smallest]).await?;
            small = Some(started.elapsed());
        }
        for _ in 0..args.fetches_per_session {
            let i = rng.usize(0..messages.len());
            conn.fetch(i + 1, &messages[i]).await?;
        }
        conn.logout().await?;
        Ok::<_, Failure>((conn.bytes_in, small))
    };
    tokio::time::timeout(SESSION_LIMIT, session)
        .await
        .unwrap_or_else(|_| Err(Failure::new(ErrorKind::Timeout, "session over 60 s")))
}

/// Sums `mailgate_backend_bytes_total` (and the uncompressed counter) over
/// the front ends into VPN and local bytes, with their CPU time.
fn snapshot(fronts: &[FrontEnd]) -> anyhow::Result<Snapshot> {
    let mut s = Snapshot::default();
    for front in fronts {
        let counts = front.counts()?;
        s.sessions_ended += counts.sessions_ended;
        s.cpu_seconds += front.cpu_seconds()?;
        for (backend, bytes) in counts.backend_bytes {
            if backend.ip() == front.ip {
                s.local_wire += bytes;
            } else {
                s.vpn_wire += bytes;
            }
        }
        for (backend, bytes) in counts.backend_uncompressed {
            if backend.ip() == front.ip {
                s.local_plain += bytes;
            } else {
                s.vpn_plain += bytes;
            }
        }
    }
    Ok(s)
}

/// A snapshot once every front end has recorded `sessions` ends (or after
/// 10 s).
fn wait_for_ends(fronts: &[FrontEnd], sessions: u64) -> anyhow::Result<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = snapshot(fronts)?;
        if s.sessions_ended as u64 >= sessions || Instant::now() > deadline {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

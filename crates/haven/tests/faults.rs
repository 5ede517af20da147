//! The fault suite: `haven serve` as a process, devices sending monitoring
//! events the way a real one does (an idempotency key per event, sent again
//! until it is answered), and the record checked afterwards. Each case ends
//! with counts: accepted, stored, notified, lost (must be 0), duplicates
//! (must be 0). The silent mail relay and the slow webhook are in the
//! safeguarding service's own call-out tests.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{Running, free_port, wait_ready};

/// One case at a time: a restarted server takes its old port again, which a
/// case running beside it could otherwise have been handed meanwhile.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A webhook receiver counting each notice's idempotency id.
fn receiver() -> (u16, Arc<Mutex<HashMap<String, usize>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let (mut len, mut key) = (0usize, None);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "idempotency-key" => key = Some(v.trim().to_string()),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                if let Some(k) = key {
                    *keep.lock().unwrap().entry(k).or_default() += 1;
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (port, got)
}

/// A trust of one school whose pupils' policy blocks `block`, with `tail`
/// (networks, lists) after it; returns the config's path and its DNS port.
fn config(dir: &Path, web: u16, data: &str, block: &str, tail: &str) -> (std::path::PathBuf, u16) {
    let dns = free_port();
    let text = format!(
        r#"
trust = "Fault Trust"
[data]
dir = "{data}"
[dns]
listen = ["127.0.0.1:{dns}"]
upstream = ["127.0.0.1:9"]
[web]
listen = ["127.0.0.1:{web}"]
[[school]]
id = "s"
name = "School"
[[group]]
id = "pupils"
[[policy]]
id = "pupils"
block = [{block}]
{tail}"#
    );
    let cfg = dir.join("haven.toml");
    std::fs::write(&cfg, text).unwrap();
    (cfg, dns)
}

/// A school with a device and a call-out webhook; returns the config path and the device token.
fn school(dir: &Path, web: u16, hook: u16, data: &str) -> (String, String) {
    let (cfg, _) = config(dir, web, data, "", "");
    let c = cfg.to_str().unwrap().to_string();
    let device = common::run(&["admin", "--config", &c, "device", "add", "--school", "s", "--name", "PC"], None);
    assert!(device.status.success(), "{}", common::err(&device));
    let token = common::text(&device).trim().to_string();
    let hook = format!("http://127.0.0.1:{hook}/callout");
    let oncall = common::run(&["admin", "--config", &c, "oncall", "add", "--school", "s", "--webhook", &hook, "--priority", "1", "--name", "DSL"], None);
    assert!(oncall.status.success(), "{}", common::err(&oncall));
    (c, token)
}

fn serve(config: &str) -> Running {
    Running(common::haven().args(["serve", "--config", config]).env("HAVEN_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

/// One event, as a device sends it: a level-5 disclosure from its own pupil,
/// with its own idempotency key. The answer's status, if any came.
fn send_event(web: u16, token: &str, i: usize) -> Option<u16> {
    let body = format!(r#"{{"person":"pupil{i}","text":"i am going to kill myself tonight, i have the pills","source":"typed"}}"#);
    let req = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: haven\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: event-{i}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", web)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1)?.parse().ok()
}

/// Sends events `from..to` on `threads` threads; the numbers that got a 2xx answer.
fn burst(web: u16, token: &str, events: Vec<usize>, threads: usize, sent: &AtomicUsize) -> Vec<usize> {
    let chunks: Vec<Vec<usize>> = (0..threads).map(|t| events.iter().copied().skip(t).step_by(threads).collect()).collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                sc.spawn(move || {
                    chunk
                        .into_iter()
                        .filter(|&i| {
                            let ok = send_event(web, token, i).is_some_and(|st| (200..300).contains(&st));
                            sent.fetch_add(1, Ordering::Relaxed);
                            ok
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// What the record holds: (alerts, occurrences, alerts with no notice queued, people with more than one alert).
fn record(data: &Path) -> (usize, i64, usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = haven_store::Store::open_dir(data).await.unwrap();
        let lead = match store.account_by_email("counter@fault.example").await {
            Ok(a) => a,
            Err(_) => {
                store
                    .add_account("counter@fault.example", haven_store::Role::TrustSafeguardingLead, None, "a long password", jiff::Timestamp::now())
                    .await
                    .unwrap()
                    .0
            }
        };
        let alerts = store.alerts_for(&lead, 100_000).await.unwrap();
        let occurrences = alerts.iter().map(|a| a.occurrences).sum();
        let mut unnoticed = 0;
        for a in &alerts {
            if store.notices_for(a.id).await.unwrap().is_empty() {
                unnoticed += 1;
            }
        }
        let people: HashSet<&str> = alerts.iter().map(|a| a.person.as_str()).collect();
        store.close().await;
        (alerts.len(), occurrences, unnoticed, alerts.len() - people.len())
    })
}

/// Sends every event not yet answered again, as devices do, until each is answered.
fn until_answered(web: u16, token: &str, mut left: Vec<usize>, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut retries = 0;
    while !left.is_empty() {
        if Instant::now() > deadline {
            let body = r#"{"person":"probe","text":"i am going to kill myself tonight","source":"typed"}"#;
            let req = format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: haven\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut s = TcpStream::connect(("127.0.0.1", web)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            panic!("{} events were never answered (one more try: {out})", left.len());
        }
        retries += left.len();
        let sent = AtomicUsize::new(0);
        let answered: HashSet<usize> = burst(web, token, left.clone(), 4, &sent).into_iter().collect();
        left.retain(|i| !answered.contains(i));
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    retries
}

fn wait_notified(got: &Arc<Mutex<HashMap<String, usize>>>, n: usize, within: Duration) -> (usize, usize) {
    let deadline = Instant::now() + within;
    loop {
        let (distinct, total) = {
            let g = got.lock().unwrap();
            (g.len(), g.values().sum::<usize>())
        };
        if distinct >= n || Instant::now() > deadline {
            return (distinct, total - distinct);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_nine_during_a_burst_of_1000_events_then_restart_loses_nothing_and_stores_nothing_twice() {
    let _one = one_at_a_time();
    const EVENTS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let web = free_port();
    let (config, token) = school(dir.path(), web, hook, "data");
    let mut server = serve(&config);
    wait_ready(format!("127.0.0.1:{web}").parse().unwrap());
    let sent = AtomicUsize::new(0);
    let answered: Vec<usize> = std::thread::scope(|sc| {
        let events = sc.spawn(|| burst(web, &token, (0..EVENTS).collect(), 8, &sent));
        // kill -9 a third of the way through.
        while sent.load(Ordering::Relaxed) < EVENTS / 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        events.join().unwrap()
    });
    let accepted_before = answered.len();
    assert!(accepted_before > 0 && accepted_before < EVENTS, "the kill fell mid-burst ({accepted_before} answered)");
    // Restart; devices send what was not answered again, with the same keys.
    let _server = serve(&config);
    wait_ready(format!("127.0.0.1:{web}").parse().unwrap());
    let answered: HashSet<usize> = answered.into_iter().collect();
    let left: Vec<usize> = (0..EVENTS).filter(|i| !answered.contains(i)).collect();
    let resent = until_answered(web, &token, left, Duration::from_secs(120));
    let (notified, redelivered) = wait_notified(&got, EVENTS, Duration::from_secs(60));
    let (alerts, occurrences, unnoticed, duplicates) = record(&dir.path().join("data"));
    let lost = EVENTS.saturating_sub(alerts);
    println!(
        "kill -9 mid-burst: accepted {accepted_before} before the kill + {} after restart ({resent} sends again), stored {alerts} alerts / {occurrences} occurrences, \
         notified {notified} (redelivered with the same idempotency id: {redelivered}), alerts without a notice {unnoticed}, lost {lost}, duplicates {duplicates}",
        EVENTS - accepted_before
    );
    assert_eq!((alerts, occurrences), (EVENTS, EVENTS as i64), "every event stored once");
    assert_eq!((lost, duplicates, unnoticed), (0, 0, 0));
    assert_eq!(notified, EVENTS, "every call-out reached the receiver");
}

#[test]
fn a_locked_database_refuses_events_whole_and_a_device_resending_loses_nothing() {
    let _one = one_at_a_time();
    const EVENTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let web = free_port();
    let (config, token) = school(dir.path(), web, hook, "data");
    let _server = serve(&config);
    wait_ready(format!("127.0.0.1:{web}").parse().unwrap());
    // Another program holds the write lock on the record for 8 s (past SQLite's 5-second wait).
    let data = dir.path().join("data");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = haven_store::Store::open_dir(&data).await.unwrap();
            let tx = store.begin().await.unwrap();
            locked_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
            drop(tx);
            store.close().await;
        });
    });
    locked_rx.recv().unwrap();
    let sent = AtomicUsize::new(0);
    let first: HashSet<usize> = burst(web, &token, (0..EVENTS).collect(), 4, &sent).into_iter().collect();
    holder.join().unwrap();
    let left: Vec<usize> = (0..EVENTS).filter(|i| !first.contains(i)).collect();
    let refused = left.len();
    let resent = until_answered(web, &token, left, Duration::from_secs(60));
    let (notified, _) = wait_notified(&got, EVENTS, Duration::from_secs(30));
    let (alerts, occurrences, unnoticed, duplicates) = record(&dir.path().join("data"));
    println!(
        "database locked: accepted {} while locked, refused {refused} (503) and sent again {resent} times, stored {alerts} / {occurrences} occurrences, notified {notified}, lost {}, duplicates {duplicates}",
        first.len(),
        EVENTS - alerts
    );
    assert!(refused > 0, "the lock refused events");
    assert_eq!((alerts, occurrences as usize, unnoticed, duplicates), (EVENTS, EVENTS, 0, 0));
    assert_eq!(notified, EVENTS);
}

/// A tmpfs of `size` at a new folder; `None` where this machine does not let us mount one.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status().ok()?.success();
        ok.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_events_and_nothing_is_lost_once_there_is_room() {
    let _one = one_at_a_time();
    const EVENTS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("small-disk"), "8m") else {
        println!("skipping the full-disk case: this user cannot mount a tmpfs (it runs as root on CI)");
        return;
    };
    let (hook, got) = receiver();
    let web = free_port();
    let (config, token) = school(dir.path(), web, hook, "small-disk/data");
    let _server = serve(&config);
    wait_ready(format!("127.0.0.1:{web}").parse().unwrap());
    assert!(send_event(web, &token, 0).is_some_and(|s| s == 201));
    // Fill the disk to the last byte.
    let filler = disk.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let one = [0u8; 1];
        while f.write_all(&one).is_ok() {}
        let _ = f.sync_all();
    }
    let sent = AtomicUsize::new(0);
    let during: HashSet<usize> = burst(web, &token, (1..EVENTS).collect(), 2, &sent).into_iter().collect();
    let refused = EVENTS - 1 - during.len();
    std::fs::remove_file(&filler).unwrap();
    let left: Vec<usize> = (1..EVENTS).filter(|i| !during.contains(i)).collect();
    let resent = until_answered(web, &token, left, Duration::from_secs(60));
    let (notified, _) = wait_notified(&got, EVENTS, Duration::from_secs(30));
    let (alerts, occurrences, unnoticed, duplicates) = record(&disk.0.join("data"));
    println!(
        "disk full: accepted {} while full, refused {refused} and sent again {resent} times, stored {alerts} / {occurrences} occurrences, notified {notified}, lost {}, duplicates {duplicates}",
        during.len(),
        EVENTS - alerts
    );
    assert!(refused > 0, "a full disk refused events");
    assert_eq!((alerts, occurrences as usize, unnoticed, duplicates), (EVENTS, EVENTS, 0, 0));
    assert_eq!(notified, EVENTS);
}

/// A DNS question for `name`, type A.
fn question(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn ten_thousand_blocked_self_harm_queries_are_all_counted_in_the_record() {
    const QUERIES: usize = 10_000;
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let web = free_port();
    std::fs::write(dir.path().join("selfharm.txt"), "harm.test\n").unwrap();
    let tail = "[[network]]\ncidr = \"127.0.0.0/8\"\nschool = \"s\"\ngroup = \"pupils\"\n\
                [[list]]\nname = \"sh\"\nformat = \"domains\"\ncategory = \"self-harm\"\npath = \"selfharm.txt\"\n";
    let (cfg, dns) = config(dir.path(), web, "data", "\"self-harm\"", tail);
    let mut server = serve(cfg.to_str().unwrap());
    wait_ready(format!("127.0.0.1:{web}").parse().unwrap());
    let answered = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for t in 0..4u16 {
            let answered = &answered;
            sc.spawn(move || {
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 512];
                for i in 0..QUERIES / 4 {
                    let id = u16::try_from(i % 60_000).unwrap() ^ (t << 14);
                    // Asked again when an answer is lost, as a stub resolver does: each question is answered once.
                    for _ in 0..5 {
                        sock.send_to(&question(id, &format!("www{i}.harm.test")), ("127.0.0.1", dns)).unwrap();
                        if matches!(sock.recv(&mut buf), Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes()) {
                            answered.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    let answered = answered.load(Ordering::Relaxed);
    // SIGTERM: what the filter found is recorded before Haven stops.
    let term = std::process::Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "stopped cleanly: {status}");
    let (alerts, occurrences, _, _) = record(&dir.path().join("data"));
    println!(
        "{QUERIES} blocked self-harm queries ({answered} answered): {alerts} alert(s) holding {occurrences} attempts, lost {}",
        answered as i64 - occurrences
    );
    assert_eq!(alerts, 1, "one concern about one device");
    assert_eq!(occurrences, answered as i64, "every blocked attempt is counted in the record, none dropped");
    assert!(answered >= QUERIES * 99 / 100);
}

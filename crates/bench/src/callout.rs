//! Call-out latency, end to end: `haven serve` as a process, a device posting
//! level-5 events to `/api/v1/events` while other events arrive at a steady
//! rate, and a local webhook receiver standing in for an SMS gateway. Each
//! latency is from the moment the device starts sending the event to the
//! moment the call-out's request has fully arrived at the receiver.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Running, free_port, haven_binary};

fn run(haven: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(haven).args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("haven {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// When each alert's call-out arrived.
type Arrivals = Arc<Mutex<HashMap<i64, Instant>>>;

/// A webhook receiver.
fn receiver() -> Result<(u16, Arrivals)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let got: Arrivals = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let Ok(clone) = s.try_clone() else { return };
                let mut r = BufReader::new(clone);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let at = Instant::now();
                if let Some(alert) = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["alert"].as_i64())
                    && let Ok(mut g) = keep.lock()
                {
                    g.entry(alert).or_insert(at);
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    Ok((port, got))
}

/// Posts one event; the ids of the alerts it made.
fn post(web: u16, token: &str, person: &str, text: &str) -> Result<Vec<i64>> {
    let body = serde_json::json!({ "person": person, "text": text, "source": "typed" }).to_string();
    let req = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: haven\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", web))?;
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let json = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json).with_context(|| format!("the answer: {out}"))?;
    Ok(v["alerts"].as_array().map(|a| a.iter().filter_map(|x| x["id"].as_i64()).collect()).unwrap_or_default())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the measurement: `events` level-5 events, `background` other events a minute.
pub(crate) fn run_bench(events: usize, background: usize) -> Result<()> {
    let haven = haven_binary()?;
    let dir = tempfile::tempdir()?;
    let (hook, got) = receiver()?;
    let (web, dns) = (free_port()?, free_port()?);
    let cfg = dir.path().join("haven.toml");
    std::fs::write(
        &cfg,
        format!(
            "trust = \"Bench\"\n[data]\ndir = \"data\"\n[dns]\nlisten = [\"127.0.0.1:{dns}\"]\nupstream = [\"127.0.0.1:9\"]\n[web]\nlisten = [\"127.0.0.1:{web}\"]\n\
             [[school]]\nid = \"s\"\nname = \"School\"\n[[group]]\nid = \"pupils\"\n[[policy]]\nid = \"pupils\"\n"
        ),
    )?;
    let c = cfg.to_str().context("a UTF-8 temporary path")?;
    let token = run(&haven, &["admin", "--config", c, "device", "add", "--school", "s", "--name", "Bench PC"])?;
    run(
        &haven,
        &["admin", "--config", c, "oncall", "add", "--school", "s", "--webhook", &format!("http://127.0.0.1:{hook}/sms"), "--priority", "1", "--name", "DSL"],
    )?;
    let _server = Running(Command::new(&haven).args(["serve", "--config", c]).env("HAVEN_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    let ready = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", web)).is_err() {
        if Instant::now() > ready {
            bail!("haven serve never listened");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Other events at a steady rate: benign chat and level-2/3 bullying, many pupils.
    let stop = Arc::new(AtomicBool::new(false));
    let sent_other = Arc::new(AtomicUsize::new(0));
    let other = {
        let (stop, sent_other, token) = (stop.clone(), sent_other.clone(), token.clone());
        std::thread::spawn(move || {
            let every = Duration::from_secs_f64(60.0 / background.max(1) as f64);
            let texts = ["see you at football practice later", "nobody likes you, everyone hates you", "can you send me the homework", "ur so dumb lol"];
            let mut next = Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = post(web, &token, &format!("other{}", i % 500), texts[i % texts.len()]);
                sent_other.fetch_add(1, Ordering::Relaxed);
                i += 1;
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let mut sent: HashMap<i64, Instant> = HashMap::new();
    let started = Instant::now();
    for i in 0..events {
        let t = Instant::now();
        let ids = post(web, &token, &format!("pupil{i}"), "i am going to kill myself tonight, i have the pills")?;
        let Some(id) = ids.first() else { bail!("event {i} made no alert") };
        sent.insert(*id, t);
        // A level-5 event every 250 ms: each call-out measured on its own.
        std::thread::sleep(Duration::from_millis(250).saturating_sub(t.elapsed()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().map(|g| sent.keys().filter(|k| g.contains_key(k)).count()).unwrap_or(0) < sent.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = other.join();
    let got = got.lock().map_err(|_| anyhow::anyhow!("receiver poisoned"))?.clone();
    let mut ms: Vec<f64> = sent.iter().filter_map(|(id, t)| got.get(id).map(|r| r.saturating_duration_since(*t).as_secs_f64() * 1000.0)).collect();
    ms.sort_by(f64::total_cmp);
    let missing = sent.len() - ms.len();
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!(
        "call-out latency over {} level-5 events ({} other events in {:.1} min = {:.0}/min): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {missing} never arrived",
        sent.len(),
        sent_other.load(Ordering::Relaxed),
        minutes,
        sent_other.load(Ordering::Relaxed) as f64 / minutes,
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    if missing > 0 {
        bail!("{missing} call-outs never arrived");
    }
    Ok(())
}

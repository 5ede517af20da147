//! `haven-bench proxy-content`: what reading pages' text costs a benign
//! page. Two proxies on loopback, `[proxy.content]` off and on, in front of
//! one local origin serving a benign HTML page; requests alternate between
//! them, one at a time. Reported: time to the first body byte and to the
//! last, median and 95th percentile, and the on/off ratio. "On" uses a new
//! URL each time (read and judged; nothing remembered); "on, remembered"
//! asks for one URL again (decided from the verdict cache, body unread).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use haven_proxy::{Filter, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) fn run(requests: usize, page_kib: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(measure(requests.max(10), page_kib.max(1)))
}

/// A benign page of about `kib` KiB: ordinary prose in paragraphs.
fn page(kib: usize) -> String {
    let mut s = String::from("<!doctype html><html><head><title>Walking in the hills</title><script>var x = 1;</script></head><body>");
    let para = "<p>The walkers crossed the valley in the morning and reached the hills by noon, where the views across \
                the reservoir were fine and the path was dry. They stopped for lunch by the old bridge.</p>\n";
    while s.len() < kib * 1024 {
        s.push_str(para);
    }
    s.push_str("</body></html>");
    s
}

async fn origin(body: String) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let answer = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(addr)
}

async fn proxy(dir: &std::path::Path, content: bool) -> Result<ProxyServer> {
    let d = dir.join(if content { "on" } else { "off" });
    std::fs::create_dir_all(&d)?;
    let config = format!(
        "trust = \"Bench\"\n[data]\ndir = \"data\"\n[proxy]\nlisten = [\"127.0.0.1:0\"]\nallow_internal = [\"127.0.0.0/8\"]\nlog = false\n\
         [proxy.content]\nenabled = {content}\n[proxy.hosts]\n\"pages.test\" = \"127.0.0.1\"\n\
         [[school]]\nid = \"s\"\nname = \"S\"\n[[group]]\nid = \"pupils\"\nname = \"Pupils\"\n\
         [[policy]]\nid = \"pupils\"\nblock = [\"adult\", \"gambling\", \"self-harm\", \"profanity\"]\n\
         [[network]]\ncidr = \"127.0.0.0/8\"\nschool = \"s\"\ngroup = \"pupils\"\n"
    );
    let path = d.join("haven.toml");
    std::fs::write(&path, config)?;
    let config = haven_config::Config::load(&path)?;
    let (lists, _) = haven_lists::compile(&config.lists, "bench", &haven_lists::NoProgress)?;
    let filter = Filter { policy: config.policy, lists: lists.into(), settings: config.proxy, classifier: haven_textscan::Classifier::shipped_shared() };
    Ok(ProxyServer::start(filter, None, &config.data_dir).await?)
}

/// (time to the first body byte, time to the end) for one request.
async fn one(proxy: SocketAddr, url: &str, expect: usize) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(format!("GET {url} HTTP/1.1\r\nHost: pages.test\r\nAccept: text/html\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut got = Vec::with_capacity(expect + 512);
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = None;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if first.is_none()
            && let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() > p + 4
        {
            first = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    anyhow::ensure!(got.starts_with(b"HTTP/1.1 200") && got.len() >= expect, "unexpected answer: {}", String::from_utf8_lossy(&got[..got.len().min(200)]));
    Ok((first.context("no body")?, total))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

async fn measure(requests: usize, page_kib: usize) -> Result<()> {
    let body = page(page_kib);
    let size = body.len();
    let o = origin(body).await?;
    let dir = tempfile::tempdir()?;
    let off = proxy(dir.path(), false).await?;
    let on = proxy(dir.path(), true).await?;
    let base = format!("http://pages.test:{}", o.port());
    // Warm both (connections, allocations, the classifier's tables).
    for i in 0..20 {
        one(off.addrs[0], &format!("{base}/warm{i}"), size).await?;
        one(on.addrs[0], &format!("{base}/warm{i}"), size).await?;
    }
    let mut runs: [(Vec<Duration>, Vec<Duration>); 3] = Default::default();
    for i in 0..requests {
        let (f, t) = one(off.addrs[0], &format!("{base}/page{i}"), size).await?;
        runs[0].0.push(f);
        runs[0].1.push(t);
        let (f, t) = one(on.addrs[0], &format!("{base}/page{i}"), size).await?;
        runs[1].0.push(f);
        runs[1].1.push(t);
        let (f, t) = one(on.addrs[0], &format!("{base}/again"), size).await?;
        runs[2].0.push(f);
        runs[2].1.push(t);
    }
    println!("Benign page of {} KiB, {requests} requests per mode, one at a time, loopback origin.\n", size / 1024);
    println!("| mode | first byte p50 (ms) | p95 | whole page p50 (ms) | p95 |");
    println!("|---|---|---|---|---|");
    let mut med = [(0.0, 0.0); 3];
    for (k, name) in ["content off", "content on (new URL each time)", "content on, remembered (same URL)"].iter().enumerate() {
        let (f, t) = &mut runs[k];
        let (f50, f95, t50, t95) = (pct(f, 0.5), pct(f, 0.95), pct(t, 0.5), pct(t, 0.95));
        med[k] = (f50, t50);
        println!("| {name} | {f50:.3} | {f95:.3} | {t50:.3} | {t95:.3} |");
    }
    println!(
        "\nRatio on/off (medians): first byte {:.2}x, whole page {:.2}x; remembered: first byte {:.2}x, whole page {:.2}x.",
        med[1].0 / med[0].0,
        med[1].1 / med[0].1,
        med[2].0 / med[0].0,
        med[2].1 / med[0].1
    );
    off.shutdown();
    on.shutdown();
    Ok(())
}

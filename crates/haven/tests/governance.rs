//! Filtering governance end to end (issue 15): in headless Chromium a
//! teacher asks for a lesson unblock for one class, the DSL approves it, and
//! `haven serve` lets a pupil of that class reach the site through DNS
//! (DNS-over-HTTPS as their laptop) and the web proxy (signed in) within
//! five seconds, while a pupil of another class of the same year stays
//! blocked; at its end the site is blocked again by itself, and the decision
//! register tells the whole story and exports it. Also `haven admin change`.

#[path = "../../safeguard/tests/common/mod.rs"]
mod browser;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::free_port;
use fantoccini::{Client, Locator};

/// An origin answering "hello from games" to anything.
fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\nhello from games");
            });
        }
    });
    addr
}

/// The DNS rcode for `name` asked over DNS-over-HTTPS with a device's token.
fn doh_rcode(doh: SocketAddr, token: &str, name: &str) -> u8 {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut s = TcpStream::connect(doh).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /dns-query/{token} HTTP/1.1\r\nHost: {doh}\r\nContent-Type: application/dns-message\r\nAccept: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        q.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let body = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| &out[i + 4..]).unwrap_or_default();
    assert!(body.len() >= 12, "a DNS answer over DoH: {}", String::from_utf8_lossy(&out));
    body[3] & 0x0f
}

/// The proxy's whole answer for `http://games.example:PORT/play` as
/// `user` (the origin listens on `port` of loopback).
fn through_proxy(proxy: SocketAddr, port: u16, user: &str) -> String {
    use base64::Engine as _;
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:a long enough password"));
    let req = format!(
        "GET http://games.example:{port}/play HTTP/1.1\r\nHost: games.example:{port}\r\nProxy-Authorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

const NXDOMAIN: u8 = 3;

struct Ports {
    web: SocketAddr,
    dns: SocketAddr,
    doh: SocketAddr,
    proxy: SocketAddr,
}

fn config(dir: &Path, p: &Ports, up: SocketAddr, origin: SocketAddr) -> std::path::PathBuf {
    std::fs::write(dir.join("games.txt"), "games.example\n").unwrap();
    let text = format!(
        r#"
trust = "Governance Trust"
[data]
dir = "data"
[web]
listen = ["{web}"]
[dns]
listen = ["{dns}"]
upstream = ["{up}"]
doh_listen = "{doh}"
block = "nxdomain"
[proxy]
listen = ["{proxy}"]
auth = "optional"
allow_internal = ["127.0.0.0/8"]
[proxy.hosts]
"games.example" = "{ip}"
[filtering]
approvers = ["dsl"]
[[school]]
id = "oak"
name = "Oak Academy"
[[group]]
id = "secondary"
name = "Secondary pupils"
[[group]]
id = "staff"
name = "Staff"
[[policy]]
id = "secondary"
block = ["games"]
[[policy]]
id = "staff"
block = []
[[user]]
id = "amy.pupil"
group = "secondary"
school = "oak"
classes = ["10GH"]
[[user]]
id = "ben.pupil"
group = "secondary"
school = "oak"
classes = ["10MA"]
[[device]]
id = "laptop-amy"
school = "oak"
group = "secondary"
owner = "amy.pupil"
doh_token = "token-laptop-amy-0000000001"
[[device]]
id = "laptop-ben"
school = "oak"
group = "secondary"
owner = "ben.pupil"
doh_token = "token-laptop-ben-0000000001"
[[list]]
name = "games"
format = "domains"
category = "games"
path = "games.txt"
"#,
        web = p.web,
        dns = p.dns,
        doh = p.doh,
        proxy = p.proxy,
        ip = origin.ip()
    );
    let path = dir.join("haven.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Adds a staff account; its second-factor secret when the role has one.
fn account(cfg: &str, email: &str, role: &str, password: &str) -> Option<String> {
    let out = common::run(&["admin", "--config", cfg, "user", "add", "--email", email, "--role", role, "--school", "oak"], Some(&format!("{password}\n")));
    assert!(out.status.success(), "{}", common::err(&out));
    common::text(&out).lines().find_map(|l| l.strip_prefix("totp-secret ").map(str::to_string))
}

async fn wait_for(c: &Client, text: &str) -> String {
    for _ in 0..100 {
        let src = c.source().await.unwrap();
        if src.contains(text) {
            return src;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {text:?}: {}", c.source().await.unwrap());
}

async fn sign_in(c: &Client, web: SocketAddr, email: &str, password: &str, totp: Option<&str>) {
    c.goto(&format!("http://{web}/login")).await.unwrap();
    c.find(Locator::Css("input[name=email]")).await.unwrap().send_keys(email).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Css("main form button")).await.unwrap().click().await.unwrap();
    if let Some(secret) = totp {
        wait_for(c, "six-digit code").await;
        let code = haven_store::sessions::totp_code(secret, jiff::Timestamp::now()).unwrap();
        c.find(Locator::Css("input[name=code]")).await.unwrap().send_keys(&code).await.unwrap();
        c.find(Locator::Css("main form button")).await.unwrap().click().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("header form button")).await.unwrap().click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Polls `f` until it holds or `limit` passes; how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lesson_unblock_for_one_class_is_asked_approved_in_force_in_seconds_lapses_and_is_in_the_register() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports { web: addr(), dns: addr(), doh: addr(), proxy: addr() };
    let games = origin();
    let cfg = config(dir.path(), &ports, common::upstream(), games);
    let cfg_s = cfg.to_str().unwrap();
    for pupil in ["amy.pupil", "ben.pupil"] {
        let out = common::run(&["proxy", "passwd", "--config", cfg_s, pupil], Some("a long enough password\n"));
        assert!(out.status.success(), "{}", common::err(&out));
    }
    account(cfg_s, "t@oak.example", "teacher", "teacher password 1");
    let dsl_totp = account(cfg_s, "dsl@oak.example", "dsl", "dsl password 1").expect("a DSL has a second factor");
    let log = dir.path().join("serve.log");
    let mut serve = common::spawn_logged(common::haven().args(["serve", "--config", cfg_s]), &log);
    for a in [ports.web, ports.doh, ports.proxy] {
        common::wait_serving(&mut serve, a, &log);
    }
    let (amy, ben) = ("token-laptop-amy-0000000001", "token-laptop-ben-0000000001");
    assert_eq!(doh_rcode(ports.doh, amy, "games.example"), NXDOMAIN, "games are blocked for Year 10");
    assert!(through_proxy(ports.proxy, games.port(), "amy.pupil").starts_with("HTTP/1.1 403"));

    let (c, _driver) = browser::chromium(serde_json::json!({})).await;
    // The teacher asks, for class 10GH, for fifty seconds from now
    // (to the second: the form's minute steps would make the test wait).
    sign_in(&c, ports.web, "t@oak.example", "teacher password 1", None).await;
    c.goto(&format!("http://{}/filtering", ports.web)).await.unwrap();
    wait_for(&c, "Ask for a change").await;
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(50);
    let local = until.to_zoned(jiff::tz::TimeZone::get("Europe/London").unwrap()).strftime("%Y-%m-%dT%H:%M:%S").to_string();
    c.execute(
        "const f = document.getElementById('ask'); f.kind.value = 'lesson'; f.scope.value = 'class'; f.scope_id.value = '10GH'; \
         f.site.value = 'games.example'; f.until.step = 1; f.until.value = arguments[0]; f.reason.value = 'Game design lesson: reviewing browser games';",
        vec![serde_json::json!(local)],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#ask button")).await.unwrap().click().await.unwrap();
    let asked = wait_for(&c, "Filtering change").await;
    assert!(asked.contains("waiting for a decision") && asked.contains("Waiting for the DSL"), "{asked}");
    let id: i64 = c.current_url().await.unwrap().path().rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(doh_rcode(ports.doh, amy, "games.example"), NXDOMAIN, "a request changes nothing yet");
    sign_out(&c).await;

    // The DSL sees it waiting and approves it.
    sign_in(&c, ports.web, "dsl@oak.example", "dsl password 1", Some(&dsl_totp)).await;
    c.goto(&format!("http://{}/filtering", ports.web)).await.unwrap();
    let waiting = wait_for(&c, "Waiting for your decision (1)").await;
    assert!(waiting.contains("class 10GH") && waiting.contains("allow games.example"), "{waiting}");
    c.find(Locator::Css(&format!("a[href='/filtering/changes/{id}']"))).await.unwrap().click().await.unwrap();
    wait_for(&c, "Approve").await;
    c.find(Locator::Css("#approve button")).await.unwrap().click().await.unwrap();
    let approved = wait_for(&c, "in force").await;
    assert!(approved.contains("dsl@oak.example"), "{approved}");

    // Within five seconds Amy (10GH) reaches it by DNS and the proxy; Ben (10MA) does not.
    let dns_took = within(Duration::from_secs(5), || doh_rcode(ports.doh, amy, "games.example") == 0);
    assert!(dns_took.is_some(), "Amy's laptop resolves games.example within 5 s of the approval");
    let proxy_took = within(Duration::from_secs(5), || through_proxy(ports.proxy, games.port(), "amy.pupil").ends_with("hello from games"));
    assert!(proxy_took.is_some(), "Amy gets the page through the proxy within 5 s: {}", through_proxy(ports.proxy, games.port(), "amy.pupil"));
    assert_eq!(doh_rcode(ports.doh, ben, "games.example"), NXDOMAIN, "another class of the same year is still blocked");
    assert!(through_proxy(ports.proxy, games.port(), "ben.pupil").starts_with("HTTP/1.1 403"));
    eprintln!("in force after the approval: DNS {dns_took:?}, proxy {proxy_took:?}");
    // `haven check` explains it with the people.
    let check = common::run(&["check", "--config", cfg_s, "--user", "amy.pupil", "games.example"], None);
    let said = common::text(&check);
    assert!(said.contains(&format!("Allowed by change {id} until")) && said.contains("requested by t@oak.example, approved by dsl@oak.example"), "{said}");

    // At its end it is blocked again, with nothing restarted.
    let left = until.duration_since(jiff::Timestamp::now()).unsigned_abs() + Duration::from_millis(500);
    tokio::time::sleep(left).await;
    assert_eq!(doh_rcode(ports.doh, amy, "games.example"), NXDOMAIN, "lapsed: blocked again by DNS");
    assert!(through_proxy(ports.proxy, games.port(), "amy.pupil").starts_with("HTTP/1.1 403"), "lapsed: blocked again by the proxy");

    // The register tells the whole story, and exports it.
    c.goto(&format!("http://{}/filtering/changes?q=10GH", ports.web)).await.unwrap();
    let register = wait_for(&c, "Decision register").await;
    assert!(register.contains("lapsed") && register.contains("Game design lesson") && register.contains("t@oak.example"), "{register}");
    c.goto(&format!("http://{}/filtering/changes/{id}", ports.web)).await.unwrap();
    let story = wait_for(&c, "History").await;
    for step in ["t@oak.example</td><td data-label=\"What\">asked", "dsl@oak.example</td><td data-label=\"What\">approved"] {
        assert!(story.contains(step), "{step} in {story}");
    }
    let csv = c
        .execute_async("const done = arguments[arguments.length - 1]; fetch('/filtering/changes?format=csv').then(r => r.text()).then(done);", vec![])
        .await
        .unwrap();
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("id,kind,school,for,what,from,until,status,reason,requested_by,decided_by"), "{csv}");
    let row = csv.lines().find(|l| l.starts_with(&format!("\"{id}\""))).expect("the change is exported");
    for part in ["\"lesson\"", "\"class 10GH\"", "\"allow games.example\"", "\"lapsed\"", "t@oak.example asked", "dsl@oak.example approved"] {
        assert!(row.contains(part), "{part} in {row}");
    }
    c.close().await.unwrap();
}

#[test]
fn admin_change_add_prints_its_id_is_in_force_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports { web: addr(), dns: addr(), doh: addr(), proxy: addr() };
    let cfg = config(dir.path(), &ports, common::upstream(), origin());
    let cfg_s = cfg.to_str().unwrap();
    let add = common::run(
        &["admin", "--config", cfg_s, "change", "add", "--school", "oak", "--user", "ben.pupil", "--allow", "games.example", "--reason", "Games club"],
        None,
    );
    assert!(add.status.success(), "{}", common::err(&add));
    let id: i64 = common::text(&add).trim().parse().expect("the change's id alone");
    let check = common::run(&["check", "--config", cfg_s, "--user", "ben.pupil", "games.example"], None);
    assert!(common::text(&check).contains(&format!("Allowed by change {id}: Games club (made by admin-cli)")), "{}", common::text(&check));
    let check = common::run(&["check", "--config", cfg_s, "--user", "amy.pupil", "games.example"], None);
    assert!(common::text(&check).starts_with("BLOCK"), "{}", common::text(&check));
    let list = common::run(&["admin", "--config", cfg_s, "change", "list", "--json"], None);
    let row: serde_json::Value = serde_json::from_str(common::text(&list).lines().next().unwrap()).unwrap();
    assert_eq!((row["id"].as_i64(), row["status"].as_str(), row["scope_id"].as_str()), (Some(id), Some("in force"), Some("ben.pupil")));
    // Nobody can allow illegal content, and a class the MIS does not know is named.
    let csam = common::run(
        &["admin", "--config", cfg_s, "change", "add", "--school", "oak", "--group", "secondary", "--allow", "--category", "csam", "--reason", "x"],
        None,
    );
    assert!(!csam.status.success() && common::err(&csam).contains("illegal content"), "{}", common::err(&csam));
    let unknown =
        common::run(&["admin", "--config", cfg_s, "change", "add", "--school", "oak", "--class", "11ZZ", "--block", "games.example", "--reason", "x"], None);
    assert!(!unknown.status.success() && common::err(&unknown).contains("no class \"11ZZ\""), "{}", common::err(&unknown));
}

//! List feeds on a schedule, through the real binary: `haven serve` refreshes
//! a member feed from a local HTTP server with its credentials, puts a
//! changed list in force without a restart, keeps the old list when the feed
//! fails, records every run, tells IT once, and shows it all on the lists page.

mod common;
use common::Running;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the feed answers (status, body), and the `Authorization` headers it was sent.
#[derive(Default)]
struct Feed {
    answer: (u16, String),
    auth: Vec<String>,
}

/// A loopback HTTP/1.1 list server, one request per connection.
fn feed_server() -> (u16, Arc<Mutex<Feed>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state: Arc<Mutex<Feed>> = Arc::default();
    let st = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    st.lock().unwrap().auth.push(v.trim().to_string());
                }
            }
            let (status, body) = st.lock().unwrap().answer.clone();
            let mut out = stream;
            let _ = write!(out, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (port, state)
}

/// A DNS query for `name`, type A; the reply's rcode, or None on timeout.
fn rcode(server: SocketAddr, name: &str) -> Option<u8> {
    let mut q = 7u16.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.send_to(&q, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    (n >= 12).then_some(buf[3] & 0x0f)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn config(dir: &Path, dns: u16, web: u16, up: SocketAddr, feed: u16) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    std::fs::write(dir.join("lists/feed.txt"), "casino.example\n").unwrap();
    let secrets = dir.join("list-secrets.toml");
    std::fs::write(&secrets, "[member]\nheader = \"Authorization: Bearer k3y-not-for-logs\"\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        r#"trust = "t"
[data]
dir = "data"
[dns]
listen = ["127.0.0.1:{dns}"]
upstream = ["{up}"]
[proxy]
listen = ["127.0.0.1:0"]
[web]
listen = ["127.0.0.1:{web}"]
[[group]]
id = "pupils"
[[policy]]
id = "pupils"
block = ["gambling"]
[[school]]
id = "s"
name = "S"
[[network]]
cidr = "127.0.0.0/8"
school = "s"
group = "pupils"
[lists]
secrets = "list-secrets.toml"
[[list]]
name = "member-feed"
format = "domains"
category = "gambling"
path = "lists/feed.txt"
url = "http://127.0.0.1:{feed}/feed.txt"
refresh_every = "1s"
credentials = "member"
"#
    );
    let p = dir.join("haven.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A plain HTTP/1.1 request to the web app; (status, Set-Cookie session, body).
fn http(web: u16, method: &str, path: &str, cookie: &str, form: &str) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", web)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let session = head.lines().filter_map(|l| l.split_once(": ")).find_map(|(k, v)| {
        (k.eq_ignore_ascii_case("set-cookie")).then(|| v.split(';').next().unwrap_or("").to_string()).filter(|c| c.starts_with("haven_session="))
    });
    (status, session, body.to_string())
}

#[test]
fn a_scheduled_refresh_puts_a_changed_list_in_force_and_a_failing_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (feed_port, feed) = feed_server();
    feed.lock().unwrap().answer = (200, "casino.example\n".into());
    let dns_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let web = common::free_port();
    let cfg = config(dir.path(), dns_port, web, common::upstream(), feed_port);
    let c = cfg.to_str().unwrap();
    let added =
        common::run(&["admin", "--config", c, "user", "add", "--email", "it@s.example", "--role", "it-technician", "--school", "s"], Some("it password 12\n"));
    assert!(added.status.success(), "{}", common::err(&added));
    let log = dir.path().join("serve.log");
    // Files are watched only hourly here: only the feed task's reload can put the new list in force.
    let _run = Running(
        common::haven()
            .args(["serve", "--config", c, "--reload-every", "3600"])
            .env("HAVEN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let dns: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    wait_until("serve answers", || rcode(dns, "casino.example") == Some(3));
    assert_eq!(rcode(dns, "newly-listed.example"), Some(0));

    // The feed changes: in force within the refresh, without a restart, downloaded with the member key.
    feed.lock().unwrap().answer = (200, "casino.example\nnewly-listed.example\n".into());
    wait_until("the changed list is in force", || rcode(dns, "newly-listed.example") == Some(3));
    assert!(feed.lock().unwrap().auth.iter().all(|a| a == "Bearer k3y-not-for-logs"), "every download sends the credentials");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = rt.block_on(haven_store::Store::open_dir(&dir.path().join("data"))).unwrap();
    let state = || rt.block_on(store.feed_states()).unwrap().into_iter().find(|s| s.last.source == "member-feed").expect("runs recorded");
    wait_until("a run with both entries is recorded", || state().last.entries == Some(2));
    assert!(state().last.ok);

    // The feed fails (a server error, then a web page instead of a list): the old list stays in force, IT is told once.
    feed.lock().unwrap().answer = (500, "oops".into());
    wait_until("a failure is recorded", || state().failures >= 1);
    feed.lock().unwrap().answer = (200, "<!DOCTYPE html><html>sign in</html>".into());
    wait_until("three failures in a row", || state().failures >= 3);
    let failed = state();
    assert!(!failed.last.ok && failed.last.message.contains("web page"), "{:?}", failed.last);
    assert_eq!(rcode(dns, "newly-listed.example"), Some(3), "the previous list is still in force");
    assert_eq!(rcode(dns, "casino.example"), Some(3));
    assert_eq!(std::fs::read_to_string(dir.path().join("lists/feed.txt")).unwrap(), "casino.example\nnewly-listed.example\n");
    let notices = rt.block_on(store.it_notices(None, true, 50)).unwrap();
    let feed_notices: Vec<_> = notices.iter().filter(|n| n.kind == "feed").collect();
    assert_eq!(feed_notices.len(), 1, "one notice when the feed starts failing, not one a try: {notices:?}");
    assert!(feed_notices[0].message.contains("member-feed") && feed_notices[0].message.contains("500"), "{}", feed_notices[0].message);

    // IT sees it on the lists page, and marks the notice seen.
    let (_, session, _) = http(web, "POST", "/login", "", "email=it%40s.example&password=it+password+12");
    let cookie = session.expect("signed in");
    let (status, _, page) = http(web, "GET", "/admin/lists", &cookie, "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("member-feed") && page.contains("failed") && page.contains("previous list stays in force"), "{page}");
    assert!(page.contains("could not be refreshed") && page.contains("Mark seen"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token").to_string();
    let (status, _, _) = http(web, "POST", "/admin/lists/seen", &cookie, &format!("id={}", feed_notices[0].id));
    assert_eq!(status, 403, "no CSRF token, no change");
    let (status, _, _) = http(web, "POST", "/admin/lists/seen", &cookie, &format!("csrf={csrf}&id={}", feed_notices[0].id));
    assert_eq!(status, 303);
    assert!(rt.block_on(store.it_notices(None, true, 50)).unwrap().iter().all(|n| n.kind != "feed"));

    // The feed recovers: in force again.
    feed.lock().unwrap().answer = (200, "casino.example\n".into());
    wait_until("the recovered list is in force", || rcode(dns, "newly-listed.example") == Some(0));
    assert!(state().last.ok && state().failures == 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("list feed") && !logged.contains("k3y-not-for-logs"), "no secret in the log: {logged}");
}

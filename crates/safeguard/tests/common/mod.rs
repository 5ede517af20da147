//! Local stand-ins for the outside world the notification tests need: an
//! SMTP server and a webhook receiver, each keeping what it was sent.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal SMTP server that keeps each message's text.
pub async fn smtp_catcher(got: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let got = got.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 catcher ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                let mut data = false;
                let mut msg = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    if data {
                        if line == ".\r\n" {
                            data = false;
                            got.lock().unwrap().push(std::mem::take(&mut msg));
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            msg.push_str(&line);
                        }
                    } else {
                        let cmd = line.to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                            b"250-catcher\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("DATA") {
                            data = true;
                            b"354 go on\r\n"
                        } else if cmd.starts_with("QUIT") {
                            w.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        w.write_all(reply).await.unwrap();
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

/// A webhook receiver that keeps each body.
pub async fn webhook(got: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let got = got.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0;
                loop {
                    let n = s.read(&mut buf[have..]).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        if body.len() >= len {
                            got.lock().unwrap().push(body.to_string());
                            break;
                        }
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            });
        }
    });
    port
}

/// Chromedriver, stopped when dropped.
pub struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium through a chromedriver of its own, with `extra`
/// Chromium options (`args` added to the test defaults, any other key as
/// given); the driver lives as long as the returned guard.
pub async fn chromium(extra: serde_json::Value) -> (fantoccini::Client, Driver) {
    use std::process::{Command, Stdio};
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let driver = Driver(Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let mut options = serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"]});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        match (k.as_str(), v.as_array()) {
            ("args", Some(more)) => options["args"].as_array_mut().unwrap().extend(more.iter().cloned()),
            _ => options[k] = v,
        }
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    for _ in 0..50 {
        if let Ok(c) = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            return (c, driver);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not answer on port {port}");
}

/// One HTTP/1.1 exchange with the web app: (status, the session cookie it
/// set, body).
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, cookie: &str, form: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let session = head
        .lines()
        .filter_map(|l| l.split_once(": "))
        .find_map(|(k, v)| k.eq_ignore_ascii_case("set-cookie").then(|| v.split(';').next().unwrap_or("").to_string()))
        .filter(|c| c.starts_with("haven_session="));
    (status, session, body.to_string())
}

/// Signs in with a password (and the second factor, given its secret);
/// the session cookie.
pub fn sign_in_with(addr: std::net::SocketAddr, email: &str, password: &str, totp: Option<&str>) -> String {
    let form = format!("email={}&password={}", email.replace('@', "%40"), password.replace(' ', "+"));
    let half = http(addr, "POST", "/login", "", &form).1.expect("a session");
    let Some(secret) = totp else { return half };
    let page = http(addr, "GET", "/login/second-factor", &half, "").2;
    let code = haven_store::sessions::totp_code(secret, jiff::Timestamp::now()).unwrap();
    http(addr, "POST", "/login/second-factor", &half, &format!("csrf={}&code={code}", csrf_of(&page))).1.expect("a signed-in session")
}

/// Signs in with a password alone.
pub fn sign_in(addr: std::net::SocketAddr, email: &str, password: &str) -> String {
    sign_in_with(addr, email, password, None)
}

/// The first CSRF token in a page.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_string()
}

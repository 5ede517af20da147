//! The Haven browser extension, loaded into headless Chromium, against a real
//! Haven service: the notice shows and its acceptance is recorded; a
//! worrying sentence typed into a page makes an alert within seconds; a
//! password field and an exempt site are never sent; with the server down
//! events wait in the extension's queue and arrive once, with their original
//! times, when it is back. Every byte the extension sends passes through a
//! recording relay the test can switch off and on.
//!
//! Needs `chromedriver` and `chromium` (Debian: chromium, chromium-driver)
//! and python3 (the extension's build); without them the test says so and
//! passes. The extension's own unit tests run too where `node` is installed.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use haven_store::{Role, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

mod common;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A relay in front of Haven that keeps a copy of every request byte and can
/// be switched off (connections refused) and on again at the same port.
struct Relay {
    port: u16,
    upstream: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    fn new(upstream: std::net::SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, upstream, seen: Arc::default(), tasks: Arc::default() }
    }

    fn up(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], self.port).into()).unwrap();
        let listener = socket.listen(64).unwrap();
        let (upstream, seen, tasks) = (self.upstream, self.seen.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                let conn = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let to_server = async {
                        let mut buf = vec![0u8; 16384];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = sw.shutdown().await;
                    };
                    let to_client = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(to_server, to_client);
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Refuses connections from now on and cuts the open ones.
    fn down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn sent(&self, text: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        String::from_utf8_lossy(&seen).matches(text).count()
    }
}

/// The page pupils type into, served on loopback (as 127.0.0.1, and as
/// `localhost`, which the test's exemption list covers).
async fn pages() -> u16 {
    let page = r#"<!doctype html><html><head><title>Class chat</title></head><body>
<form id="f" onsubmit="event.preventDefault(); document.getElementById('log').textContent = 'sent';">
<textarea id="msg" name="msg"></textarea>
<input type="password" id="pw" name="pw">
<button id="send">Send</button></form><p id="log"></p></body></html>"#;
    let app = axum::Router::new().route("/chat", axum::routing::get(move || async move { axum::response::Html(page) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn wait_until<F: AsyncFnMut() -> bool>(limit: Duration, what: &str, mut f: F) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}

async fn submit(c: &fantoccini::Client, text: &str, password: &str) {
    let msg = c.find(Locator::Css("#msg")).await.unwrap();
    msg.clear().await.unwrap();
    msg.send_keys(text).await.unwrap();
    if !password.is_empty() {
        c.find(Locator::Css("#pw")).await.unwrap().send_keys(password).await.unwrap();
    }
    c.find(Locator::Css("#send")).await.unwrap().click().await.unwrap();
}

#[test]
fn the_extensions_own_unit_tests_pass() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipping: node is not installed (the extension's unit tests need Node.js 20 or later)");
        return;
    }
    let out = Command::new("node").args(["--test", "test/"]).current_dir(repo().join("extension")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pupil_types_into_a_page_and_the_dsl_gets_an_alert() {
    if Command::new("chromedriver").arg("--version").output().is_err() {
        eprintln!("skipping: chromedriver is not installed (Debian: apt-get install chromium chromium-driver)");
        return;
    }
    // The extension, built as IT builds it, copied with this test's config.json.
    let build = Command::new("bash").arg(repo().join("extension/build.sh")).output().unwrap();
    assert!(build.status.success(), "extension/build.sh: {}", String::from_utf8_lossy(&build.stderr));
    assert!(repo().join("target/haven-extension.zip").is_file());
    let ext = tempfile::tempdir().unwrap();
    let copy = Command::new("cp").arg("-R").arg(repo().join("target/extension/.")).arg(ext.path()).status().unwrap();
    assert!(copy.success());

    // Haven, with an acceptable-use text and `localhost` exempt.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    store.upsert_school("oak", "Oak Primary", false).await.unwrap();
    let now = jiff::Timestamp::now();
    store.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "lead password 1", now).await.unwrap();
    let lead = store.account_by_email("lead@trust.example").await.unwrap();
    let (device, token) = store.add_device("oak", "Year 9 laptop 14", now).await.unwrap();
    store.set_device_owner(device.id, Some("amy.pupil")).await.unwrap();
    let mut service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
    service.evidence_dir = dir.path().join("evidence");
    let mut settings = (*service.settings()).clone();
    settings.extension.acceptable_use = Some(("2026-09".into(), "I will be kind online and tell an adult if something worries me.".into()));
    settings.extension.exempt.push("localhost".into());
    service.reload(settings);
    let haven = haven_safeguard::serve(service.clone(), &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    let relay = Relay::new(haven);
    relay.up();
    std::fs::write(ext.path().join("config.json"), format!(r#"{{"server": "http://127.0.0.1:{}", "token": "{token}"}}"#, relay.port)).unwrap();
    let site = pages().await;

    let (c, _driver) = common::chromium(serde_json::json!({
        "args": [format!("--load-extension={}", ext.path().display())],
        "excludeSwitches": ["disable-extensions"],
    }))
    .await;

    // The notice opens in its own tab on first run (the extension's own tab,
    // which the driver does not list: found through the extension's API),
    // and the pupil accepts it there.
    let base = format!("chrome-extension://{}", extension_id(ext.path()));
    c.goto(&format!("{base}/popup.html")).await.unwrap();
    wait_until(Duration::from_secs(15), "the monitoring notice opening", async || {
        let open = c
            .execute_async(
                "const done = arguments[arguments.length - 1]; chrome.tabs.query({url: chrome.runtime.getURL('notice.html')}).then(t => done(t.length));",
                vec![],
            )
            .await;
        open.is_ok_and(|n| n.as_u64().unwrap_or(0) >= 1)
    })
    .await;
    c.goto(&format!("{base}/notice.html")).await.unwrap();
    let notice_page = c.source().await.unwrap();
    assert!(notice_page.contains("monitored by your school"), "{notice_page}");
    wait_until(Duration::from_secs(5), "the acceptable-use text", async || {
        c.find(Locator::Css("#aup-text")).await.is_ok_and(|_| true) && c.source().await.unwrap_or_default().contains("I will be kind online")
    })
    .await;
    c.find(Locator::Css("#accept")).await.unwrap().click().await.unwrap();
    wait_until(Duration::from_secs(5), "the acceptance being recorded", async || store.has_accepted("oak", "amy.pupil", "2026-09").await.unwrap()).await;
    let accepted = store.acceptances(Some("oak"), 10).await.unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].device, Some(device.id));

    // A worrying sentence typed and sent in an ordinary page: an alert within 5 s.
    c.new_window(true).await.unwrap();
    let tabs = c.windows().await.unwrap();
    c.switch_to_window(tabs.last().unwrap().clone()).await.unwrap();
    c.goto(&format!("http://127.0.0.1:{site}/chat")).await.unwrap();
    submit(&c, "i have the pills ready and im going to take them all tonight, goodbye everyone", "hunter2-secret").await;
    let took = wait_until(Duration::from_secs(5), "an alert from the typed sentence", async || {
        store.alerts_for(&lead, 50).await.unwrap().iter().any(|a| a.person == "amy.pupil" && a.category == "Vulnerable person" && a.source == "typed")
    })
    .await;
    eprintln!("typed to alert in {took:?}");
    let id = store.alerts_for(&lead, 50).await.unwrap().iter().find(|a| a.category == "Vulnerable person").unwrap().id;
    let detail = store.alert_detail(&lead, id).await.unwrap().unwrap();
    assert_eq!(detail.url.as_deref(), Some(format!("http://127.0.0.1:{site}/chat").as_str()));
    // The server asked for a screenshot of the page for this finding; the extension sent it.
    wait_until(Duration::from_secs(10), "the screenshot the server asked for", async || {
        store.alert_detail(&lead, id).await.unwrap().unwrap().screenshot.is_some()
    })
    .await;
    assert!(relay.sent(&format!("127.0.0.1:{site}/chat")) > 0, "the event carries the page's address");
    assert_eq!(relay.sent("hunter2-secret"), 0, "a password field is never sent");

    // The same page on an exempt site: nothing sent.
    c.goto(&format!("http://localhost:{site}/chat")).await.unwrap();
    submit(&c, "exempt site words: i want to die", "").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(relay.sent("exempt site words"), 0, "an exempt site is never sent");

    // The server goes away: the event waits in the queue, then arrives once.
    relay.down();
    c.goto(&format!("http://127.0.0.1:{site}/chat")).await.unwrap();
    let typed_at = jiff::Timestamp::now();
    submit(&c, "im going to stab him tomorrow, the knife is already in my bag", "").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let violent = async || store.alerts_for(&lead, 50).await.unwrap().into_iter().filter(|a| a.category == "Bullying/Violence").collect::<Vec<_>>();
    assert!(violent().await.is_empty(), "nothing reaches Haven while it is down");
    let back = jiff::Timestamp::now();
    relay.up();
    wait_until(Duration::from_secs(60), "the queued event arriving", async || !violent().await.is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alerts = violent().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].occurrences, 1, "delivered once");
    let received: jiff::Timestamp = alerts[0].received_at.parse().unwrap();
    assert!(
        received >= typed_at.checked_sub(jiff::SignedDuration::from_secs(2)).unwrap() && received < back,
        "its original time ({received}), not its arrival"
    );

    // IT sees the device's contact and version.
    let d = store.devices().await.unwrap().into_iter().find(|d| d.device.id == device.id).unwrap();
    assert!(d.last_seen_at.is_some());
    assert_eq!(d.contact.agent.as_deref(), Some("haven-extension/0.1.0"));
}

/// The id Chromium gives an unpacked extension: from the SHA-256 of its folder's path.
fn extension_id(dir: &std::path::Path) -> String {
    use sha2::Digest as _;
    let path = std::fs::canonicalize(dir).unwrap();
    let h = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
    h.iter().take(16).flat_map(|b| [b >> 4, b & 15]).map(|n| (b'a' + n) as char).collect()
}

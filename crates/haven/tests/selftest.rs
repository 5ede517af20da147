//! `haven selftest` through a real `haven serve` (DNS-over-HTTPS and the
//! proxy on loopback, a one-answer upstream resolver): every probe as
//! expected on the demo; without the illegal-content list the IWF probe
//! fails, the exit status says so, and IT is told in the record.

mod common;
use common::{Running, free_port};

use std::net::SocketAddr;
use std::path::Path;

struct Demo {
    config: std::path::PathBuf,
    data: std::path::PathBuf,
    proxy: SocketAddr,
    doh: SocketAddr,
    web: SocketAddr,
    _serve: Running,
}

/// The demo configuration on free loopback ports, `edit`ed, served.
fn serve_demo(dir: &Path, shared: &Path, edit: impl FnOnce(String) -> String) -> Demo {
    let config = common::demo_config(dir, shared);
    let (dns, doh, proxy, web) = (free_port(), free_port(), free_port(), free_port());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("listen = [\"127.0.0.1:5353\", \"[::1]:5353\"]", &format!("listen = [\"127.0.0.1:{dns}\"]"))
        .replace("upstream = [\"127.0.0.1:53\"]", &format!("upstream = [\"{}\"]", common::upstream()))
        .replace("doh_listen = \"127.0.0.1:8053\"", &format!("doh_listen = \"127.0.0.1:{doh}\""))
        .replace("listen = [\"127.0.0.1:3128\"]", &format!("listen = [\"127.0.0.1:{proxy}\"]"))
        .replace("listen = [\"127.0.0.1:8080\"]", &format!("listen = [\"127.0.0.1:{web}\"]"))
        // The probes ask as secondary pupils: the demo's overnight windows
        // (which block every site but education) are kept to primary pupils,
        // so what is checked does not depend on the hour the test runs.
        .replace("groups = [\"secondary\", \"sixth-form\"]\nseason = \"term\"", "groups = [\"primary\"]\nseason = \"term\"")
        .replace("groups = [\"primary\", \"secondary\", \"sixth-form\"]\nseason = \"holiday\"", "groups = [\"primary\"]\nseason = \"holiday\"");
    std::fs::write(&config, edit(text)).unwrap();
    let log = dir.join("serve.log");
    let mut serve = common::spawn_logged(common::haven().args(["serve", "--config", config.to_str().unwrap()]), &log);
    let (proxy, doh, web) =
        (format!("127.0.0.1:{proxy}").parse().unwrap(), format!("127.0.0.1:{doh}").parse().unwrap(), format!("127.0.0.1:{web}").parse().unwrap());
    for a in [proxy, doh, web] {
        common::wait_serving(&mut serve, a, &log);
    }
    Demo { data: dir.join("data"), config, proxy, doh, web, _serve: serve }
}

fn selftest(d: &Demo) -> (std::process::Output, Vec<serde_json::Value>) {
    let out = common::run(&["selftest", "--config", d.config.to_str().unwrap(), "--school", "riverside-academy", "--group", "secondary", "--json"], None);
    let lines = common::text(&out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    (out, lines)
}

fn probe<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines.iter().find(|l| l["probe"] == name).unwrap_or_else(|| panic!("no {name} probe in {lines:?}"))
}

fn record<T>(data: &Path, f: impl AsyncFnOnce(&haven_store::Store) -> T) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let store = haven_store::Store::open_dir(data).await.unwrap();
        let out = f(&store).await;
        store.close().await;
        out
    })
}

fn send(to: SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(to).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn selftest_against_the_demo_every_probe_as_expected_and_recorded_without_alerts() {
    let Some(shared) = common::shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let demo = serve_demo(dir.path(), &shared, |t| t);
    let alerts_before = record(&demo.data, async |s| s.totals(None).await.unwrap().iter().map(|t| t.count).sum::<i64>());
    let (out, lines) = selftest(&demo);
    assert!(out.status.success(), "{}\n{}", common::text(&out), common::err(&out));
    let names: Vec<&str> = lines.iter().map(|l| l["probe"].as_str().unwrap()).collect();
    assert_eq!(names, ["iwf", "ctiru", "adult", "gambling", "self-harm", "circumvention", "safe-search", "profanity"]);
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
        assert!(l["expected"].is_string() && l["got"].is_string());
    }
    // Through both paths, Haven's own answers.
    let iwf = probe(&lines, "iwf");
    assert_eq!(iwf["expected"], "blocked");
    assert!(iwf["got"].as_str().unwrap().contains("dns: blocked (NXDomain, EDE 15") || iwf["got"].as_str().unwrap().contains("EDE 15"), "{iwf}");
    assert!(iwf["got"].as_str().unwrap().contains("proxy: blocked (403 block page: csam)"), "{iwf}");
    let safe = probe(&lines, "safe-search")["got"].as_str().unwrap().to_string();
    assert!(safe.contains("CNAME forcesafesearch.google.com") && safe.contains("safe=active"), "{safe}");
    assert!(probe(&lines, "profanity")["got"].as_str().unwrap().contains("words classified"), "{lines:?}");
    // Every probe of the run is in the checks log; none failed, so no notice; no pupil's alert.
    let (checks, notices) =
        record(&demo.data, async |s| (s.filter_checks(Some("riverside-academy"), 100).await.unwrap(), s.it_notices(None, true, 10).await.unwrap()));
    assert!(checks.len() >= 15, "{checks:?}");
    assert!(checks.iter().all(|c| c.origin == "command" && c.group == "secondary" && c.outcome.ok && c.who.starts_with("haven selftest")));
    assert!(notices.is_empty(), "{notices:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let alerts_after = record(&demo.data, async |s| s.totals(None).await.unwrap().iter().map(|t| t.count).sum::<i64>());
    assert_eq!(alerts_before, alerts_after, "a probe is not a pupil: no safeguarding alert");
    let _ = demo.doh;
}

#[test]
fn without_the_illegal_list_the_iwf_probe_fails_it_is_told_and_a_forged_probe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // No shared lists: only the stand-ins; the IWF one removed.
    let demo = serve_demo(dir.path(), &dir.path().join("no-shared-lists"), |t| {
        let start = t.find("[[list]]\nname = \"iwf-demo-test-entries\"").unwrap();
        let end = start + t[start..].find("\n\n").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    });
    let (out, lines) = selftest(&demo);
    assert!(!out.status.success(), "a failed probe is a failed run");
    assert!(common::err(&out).contains("iwf"), "{}", common::err(&out));
    let iwf = probe(&lines, "iwf");
    assert_eq!(iwf["ok"], false, "{iwf}");
    assert!(iwf["got"].as_str().unwrap().contains("not listed here"), "{iwf}");
    assert_eq!(probe(&lines, "ctiru")["ok"], true, "the CTIRU stand-in is still there: {lines:?}");
    let notices = record(&demo.data, async |s| s.it_notices(Some("riverside-academy"), true, 10).await.unwrap());
    assert!(notices.iter().any(|n| n.kind == "filtering-check" && n.message.contains("iwf through")), "{notices:?}");
    let checks = record(&demo.data, async |s| s.filter_checks(None, 100).await.unwrap());
    assert!(checks.iter().any(|c| c.outcome.probe == "iwf" && !c.outcome.ok));

    // Without the key nobody is a probe: a made-up token is an unknown DoH token and a wrong proxy password.
    let doh = send(demo.doh, "GET /dns-query/probe.eDE.eDE?dns=AAABAAABAAAAAAAAA3d3dwZnb29nbGUDY29tAAABAAE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(doh.starts_with("HTTP/1.1 403"), "{doh}");
    let proxy = send(
        demo.proxy,
        "GET http://pornhub.com/ HTTP/1.1\r\nHost: pornhub.com\r\nProxy-Authorization: Basic aGF2ZW4tcHJvYmU6cHJvYmUueC55\r\nConnection: close\r\n\r\n",
    );
    assert!(proxy.starts_with("HTTP/1.1 407"), "{proxy}");

    // What a pupil's browser sees on the "check this device" page: through Haven, as whom; and Haven's block, readable by the page.
    let through = send(demo.proxy, "GET http://check.haven.invalid/.well-known/haven-check HTTP/1.1\r\nHost: check.haven.invalid\r\nConnection: close\r\n\r\n");
    assert!(through.contains("\"haven\":\"proxy\"") && through.contains("\"group\":\"secondary\""), "{through}");
    let blocked =
        send(demo.proxy, "GET http://ctiru-test.haven.invalid/.well-known/haven-check HTTP/1.1\r\nHost: ctiru-test.haven.invalid\r\nConnection: close\r\n\r\n");
    assert!(blocked.starts_with("HTTP/1.1 403") && blocked.contains("\"haven\":\"blocked\"") && blocked.contains("terrorism"), "{blocked}");
    assert!(blocked.to_ascii_lowercase().contains("access-control-allow-origin: *"), "{blocked}");
    let page = send(demo.web, "GET /check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("data-host=\"ctiru-test.haven.invalid\"") && page.contains("connect-src 'self' http:"), "{page}");
}

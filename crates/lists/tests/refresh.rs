//! `update::refresh` (what `haven serve`'s feed task runs) against a local
//! HTTP server: each source on its own, member feeds with credentials, and a
//! failure that keeps the previous list.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use haven_lists::feed::Credentials;
use haven_lists::update::{Fetch, refresh};
use haven_lists::{Format, ListIndex, NoProgress, SourceSpec};
use haven_policy::{Category, ListLookup, Request};

/// What the server answers (status, body) and the `Authorization` headers it saw.
#[derive(Default)]
struct Server {
    answers: BTreeMap<String, (u16, String)>,
    auth_seen: Vec<Option<String>>,
}

/// A loopback HTTP/1.1 server; a path answers only when its request carries
/// `Authorization: Bearer k3y` if the path starts with `/member/`.
fn serve() -> (String, Arc<Mutex<Server>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Arc<Mutex<Server>> = Arc::default();
    let st = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut auth = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = Some(v.trim().to_string());
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut s = st.lock().unwrap();
            s.auth_seen.push(auth.clone());
            let (status, body) = if path.starts_with("/member/") && auth.as_deref() != Some("Bearer k3y") {
                (401, "who are you".to_string())
            } else {
                s.answers.get(&path).cloned().unwrap_or((404, "not found".into()))
            };
            drop(s);
            let mut out = stream;
            let _ = write!(out, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (base, state)
}

fn source(name: &str, path: &Path, url: String, category: Category) -> SourceSpec {
    SourceSpec {
        name: name.into(),
        format: Format::Domains,
        path: path.into(),
        url: Some(url),
        category: Some(category),
        labels: BTreeMap::new(),
        very_restrictive: false,
    }
}

fn listed(index: &ListIndex, host: &str) -> bool {
    let mut out = Vec::new();
    index.lookup(&Request::Host(host.into()), &mut out);
    !out.is_empty()
}

#[test]
fn each_source_refreshes_on_its_own_and_member_feeds_send_their_credentials() {
    let (base, server) = serve();
    let dir = tempfile::tempdir().unwrap();
    let index_path = dir.path().join("lists.havenidx");
    let specs = vec![
        source("member", &dir.path().join("lists/member.txt"), format!("{base}/member/list.txt"), Category::Terrorism),
        source("open", &dir.path().join("lists/open.txt"), format!("{base}/open.txt"), Category::Gambling),
    ];
    // As in a running Haven, every source is on disk already: the index is compiled from all of them.
    std::fs::create_dir_all(dir.path().join("lists")).unwrap();
    std::fs::write(dir.path().join("lists/member.txt"), "old.example\n").unwrap();
    server.lock().unwrap().answers.insert("/member/list.txt".into(), (200, "bad.example\n".into()));
    server.lock().unwrap().answers.insert("/open.txt".into(), (200, "casino.example\n".into()));

    // Without credentials the member feed is refused; the open one still comes in.
    let out = refresh(&specs, &index_path, "t1", &NoProgress, &Fetch::default());
    let member = out.iter().find(|o| o.name == "member").unwrap();
    let e = member.result.clone().unwrap_err();
    assert!(e.contains("wants credentials") && e.contains("401"), "{e}");
    let open = out.iter().find(|o| o.name == "open").unwrap();
    assert_eq!(open.result.clone().unwrap().entries, 1);
    let index = ListIndex::load(&index_path).unwrap();
    assert!(listed(&index, "casino.example") && listed(&index, "old.example") && !listed(&index, "bad.example"));

    // With them, only the member feed when it alone is picked.
    let mut fetch = Fetch { only: Some(vec!["member".into()]), ..Fetch::default() };
    fetch.credentials.insert("member".into(), Credentials::Header { name: "Authorization".into(), value: "Bearer k3y".into() });
    server.lock().unwrap().auth_seen.clear();
    let out = refresh(&specs, &index_path, "t2", &NoProgress, &fetch);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].result.clone().unwrap().entries, 1, "{out:?}");
    assert_eq!(server.lock().unwrap().auth_seen, [Some("Bearer k3y".to_string())], "one request, with the key; the open feed was not asked");
    let index = ListIndex::load(&index_path).unwrap();
    assert!(listed(&index, "bad.example") && listed(&index, "casino.example"));
    assert_eq!(index.header().built_at, "t2");

    // Wrong credentials: named as such, and the previous list stays in force.
    fetch.credentials.insert("member".into(), Credentials::Basic { username: "u".into(), password: "wrong".into() });
    server.lock().unwrap().answers.insert("/member/list.txt".into(), (200, "other.example\n".into()));
    let out = refresh(&specs, &index_path, "t3", &NoProgress, &fetch);
    let e = out[0].result.clone().unwrap_err();
    assert!(e.contains("refused the credentials") && !e.contains("wrong"), "{e}");
    let index = ListIndex::load(&index_path).unwrap();
    assert_eq!(index.header().built_at, "t2", "nothing was rebuilt");
    assert!(listed(&index, "bad.example") && !listed(&index, "other.example"));
}

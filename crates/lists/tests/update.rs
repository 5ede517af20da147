//! `haven lists update` against a local HTTP server: downloads are checked and
//! swapped in atomically; any failure keeps the previous files and index.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use haven_lists::{Format, ListIndex, NoProgress, SourceSpec, update::update};
use haven_policy::{Category, ListLookup, Request};

type Routes = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// A loopback HTTP/1.1 server answering from `routes`, one request per connection.
fn serve() -> (String, Routes) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes: Routes = Arc::default();
    let r = routes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = r.lock().unwrap().get(&path).cloned().unwrap_or((404, b"not found".to_vec()));
            let mut s = stream;
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
    });
    (base, routes)
}

fn source(name: &str, format: Format, path: &Path, url: String, category: Option<Category>) -> SourceSpec {
    SourceSpec { name: name.into(), format, path: path.into(), url: Some(url), category, labels: BTreeMap::new(), very_restrictive: false }
}

fn listed(index: &ListIndex, host: &str) -> bool {
    let mut out = Vec::new();
    index.lookup(&Request::Host(host.into()), &mut out);
    !out.is_empty()
}

fn ut1_archive(domains: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(domains.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "blacklists/gambling/domains", domains.as_bytes()).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn update_swaps_in_good_downloads_and_keeps_the_old_on_failure() {
    let (base, routes) = serve();
    let dir = tempfile::tempdir().unwrap();
    let index_path = dir.path().join("lists.havenidx");
    let hosts_path = dir.path().join("lists/ads.hosts");
    let ut1_path = dir.path().join("lists/ut1");
    let specs = vec![
        source("ads", Format::Hosts, &hosts_path, format!("{base}/ads.hosts"), Some(Category::Advertising)),
        source("ut1", Format::Ut1, &ut1_path, format!("{base}/blacklists.tar.gz"), None),
    ];
    routes.lock().unwrap().insert("/ads.hosts".into(), (200, b"0.0.0.0 ads.example\n0.0.0.0 track.example\n".to_vec()));
    routes.lock().unwrap().insert("/blacklists.tar.gz".into(), (200, ut1_archive("casino.example\n")));

    let (done, report) = update(&specs, &index_path, "t1", &NoProgress).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(report.sources[0].entries, 2);
    let index = ListIndex::load(&index_path).unwrap();
    assert!(listed(&index, "ads.example") && listed(&index, "casino.example"));
    assert!(ut1_path.join("gambling/domains").exists(), "the archive's category level is the tree");

    // The hosts source now answers 404: nothing changes.
    routes.lock().unwrap().insert("/ads.hosts".into(), (404, b"gone".to_vec()));
    let e = update(&specs, &index_path, "t2", &NoProgress).unwrap_err().to_string();
    assert!(e.contains("\"ads\"") && e.contains("download"), "{e}");
    let index = ListIndex::load(&index_path).unwrap();
    assert_eq!(index.header().built_at, "t1");
    assert!(std::fs::read_to_string(&hosts_path).unwrap().contains("track.example"));

    // A web page instead of a list is rejected.
    routes.lock().unwrap().insert("/ads.hosts".into(), (200, b"<!DOCTYPE html><html>login</html>".to_vec()));
    let e = update(&specs, &index_path, "t3", &NoProgress).unwrap_err().to_string();
    assert!(e.contains("web page"), "{e}");
    // A broken archive is rejected, and the good hosts download is not applied either.
    routes.lock().unwrap().insert("/ads.hosts".into(), (200, b"0.0.0.0 new.example\n".to_vec()));
    routes.lock().unwrap().insert("/blacklists.tar.gz".into(), (200, b"not gzip".to_vec()));
    let e = update(&specs, &index_path, "t4", &NoProgress).unwrap_err().to_string();
    assert!(e.contains("UT1 archive"), "{e}");
    let index = ListIndex::load(&index_path).unwrap();
    assert_eq!(index.header().built_at, "t1");
    assert!(!listed(&index, "new.example"));
    assert!(listed(&index, "casino.example"));
    assert!(std::fs::read_to_string(&hosts_path).unwrap().contains("track.example"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("lists")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no staging files left behind: {leftovers:?}");

    // Both good again: applied together.
    routes.lock().unwrap().insert("/blacklists.tar.gz".into(), (200, ut1_archive("casino.example\npoker.example\n")));
    update(&specs, &index_path, "t5", &NoProgress).unwrap();
    let index = ListIndex::load(&index_path).unwrap();
    assert!(listed(&index, "new.example") && listed(&index, "poker.example"));
    assert!(!listed(&index, "track.example"));
}

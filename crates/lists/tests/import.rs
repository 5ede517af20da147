//! Importing every format from files, compiling, saving, loading and looking up.

use std::collections::BTreeMap;
use std::path::Path;

use haven_lists::{Format, ListIndex, NoProgress, SourceSpec, compile};
use haven_policy::{Category, ListLookup, ListMatch, MatchKind, Request};
use sha2::{Digest, Sha256};

fn spec(name: &str, format: Format, path: &Path, category: Option<Category>) -> SourceSpec {
    SourceSpec { name: name.into(), format, path: path.to_path_buf(), url: None, category, labels: BTreeMap::new(), very_restrictive: false }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn lookup(index: &ListIndex, url: &str) -> Vec<ListMatch> {
    let mut out = Vec::new();
    index.lookup(&Request::parse(url).unwrap(), &mut out);
    out
}

fn cats(m: &[ListMatch]) -> Vec<String> {
    let mut v: Vec<String> = m.iter().flat_map(|m| m.categories.iter().map(|c| c.id().to_string())).collect();
    v.sort();
    v.dedup();
    v
}

struct Fixture {
    _dir: tempfile::TempDir,
    specs: Vec<SourceSpec>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ut1/gambling/domains", "casino.example\nbet.example\n\n# comment\nbad name.example\n");
    write(d, "ut1/gambling/urls", "games.example/poker/\n");
    write(d, "ut1/drogue/domains", "weed.example\n");
    write(d, "ut1/agressif/expressions", "(^|[./-])gore[0-9]*\\.\n([unclosed\n");
    write(d, "ut1/brand_new_label/domains", "x.example\ny.example\n");
    write(d, "ut1/adult/usage", "black\n");
    let hosts = write(d, "porn.hosts", "0.0.0.0 www.porn.example porn2.example\n127.0.0.1 localhost\nnot-an-address name.example\n0.0.0.0 10.9.8.7\n");
    let doms = write(d, "vpn.txt", "# title\n||vpn.example^\nproxy.example # trailing note\nlocalhost\n");
    let urls = write(d, "urls.txt", "http://docs.example/share/abc\nhttps://docs.example/q?id=7\n");
    let abuse = "abuse.example/hidden/page.html";
    let mut sha = String::new();
    for e in [abuse, "whole.example/"] {
        sha.push_str(&format!("{:x}\n", Sha256::digest(e.as_bytes())));
    }
    sha.push_str("nothex\n");
    let sha_path = write(d, "iwf.sha256", &sha);
    let md5_path = write(d, "md5.txt", &format!("{:x}\n", md5::Md5::digest(b"md5.example/x/")));
    let specs = vec![
        spec("ut1", Format::Ut1, &d.join("ut1"), None),
        spec("porn", Format::Hosts, &hosts, Some(Category::Adult)),
        spec("vpn", Format::Domains, &doms, Some(Category::Circumvention)),
        spec("docs", Format::Urls, &urls, Some(Category::FileHosting)),
        spec("iwf", Format::Sha256, &sha_path, Some(Category::Csam)),
        spec("ctiru", Format::Md5, &md5_path, Some(Category::Terrorism)),
    ];
    Fixture { _dir: dir, specs }
}

#[test]
fn every_format_imports_and_reports_bad_lines_with_their_place() {
    let f = fixture();
    let (index, report) = compile(&f.specs, "2026-11-22T00:00:00Z", &NoProgress).unwrap();
    let ut1 = &report.sources[0];
    assert_eq!(ut1.bad_lines, 2, "{:#?}", ut1.bad_samples);
    let bad_name = ut1.bad_samples.iter().find(|b| b.file.ends_with("gambling/domains")).unwrap();
    assert_eq!(bad_name.line, 5);
    assert!(bad_name.why.contains("letters, digits"));
    let bad_re = ut1.bad_samples.iter().find(|b| b.file.ends_with("agressif/expressions")).unwrap();
    assert_eq!(bad_re.line, 2);
    assert!(bad_re.why.contains("invalid regular expression"));
    assert_eq!(ut1.unmapped_labels.get("brand_new_label"), Some(&2));
    assert_eq!(ut1.categories.get("gambling"), Some(&3));
    let hosts = &report.sources[1];
    assert_eq!((hosts.entries, hosts.bad_lines), (3, 1));
    assert_eq!(hosts.bad_samples[0].line, 3);
    let vpn = &report.sources[2];
    assert_eq!((vpn.entries, vpn.bad_lines), (2, 1));
    assert_eq!(report.sources[4].bad_lines, 1);
    assert_eq!(index.header().sha256_count, 2);
    assert_eq!(index.header().md5_count, 1);
}

#[test]
fn lookups_cover_subdomains_paths_hashes_and_expressions() {
    let f = fixture();
    let (index, _) = compile(&f.specs, "", &NoProgress).unwrap();
    assert_eq!(cats(&lookup(&index, "https://a.b.casino.example/x")), ["gambling"]);
    assert_eq!(cats(&lookup(&index, "notcasino.example")), Vec::<String>::new());
    assert_eq!(cats(&lookup(&index, "http://porn.example/")), ["adult"], "www. stripped from the entry");
    assert_eq!(cats(&lookup(&index, "http://WWW.PORN2.EXAMPLE.:8080/")), ["adult"]);
    assert_eq!(cats(&lookup(&index, "http://10.9.8.7/a")), ["adult"]);
    assert!(lookup(&index, "http://1.10.9.8.7/").is_empty(), "IP entries match exactly");
    // URL prefixes on segment boundaries, on the host and its subdomains.
    assert_eq!(cats(&lookup(&index, "http://games.example/poker/table/1")), ["gambling"]);
    assert_eq!(cats(&lookup(&index, "http://m.games.example/poker")), ["gambling"]);
    assert!(lookup(&index, "http://games.example/pokerface").is_empty());
    assert!(lookup(&index, "http://games.example/").is_empty());
    assert_eq!(cats(&lookup(&index, "docs.example/q?id=7")), ["file-hosting"]);
    assert!(lookup(&index, "docs.example/q?id=8").is_empty());
    // Hashed (IWF-style) entries: exact page, and a whole-site entry.
    let m = lookup(&index, "http://www.abuse.example/hidden/page.html?utm=1");
    assert_eq!(cats(&m), ["csam"]);
    assert_eq!(m[0].kind, MatchKind::Hash);
    assert!(lookup(&index, "http://abuse.example/hidden/other.html").is_empty(), "IWF entries are per URL");
    assert_eq!(cats(&lookup(&index, "http://x.whole.example/any/thing")), ["csam"]);
    assert_eq!(cats(&lookup(&index, "whole.example")), ["csam"], "a host-only request checks the site entry");
    assert_eq!(cats(&lookup(&index, "http://md5.example/x/y.html")), ["terrorism"]);
    // Expressions.
    let m = lookup(&index, "http://gore24.example/");
    assert_eq!(m[0].kind, MatchKind::Expression);
    assert_eq!(cats(&m), ["hate-speech", "violence"]);
    // Source names come back for explanations.
    let m = lookup(&index, "vpn.example");
    assert_eq!(index.source_name(m[0].source), "vpn");
    assert_eq!(m[0].entry, "vpn.example");
}

#[test]
fn a_domain_in_two_sources_reports_both() {
    let f = fixture();
    let extra = write(f._dir.path(), "more.txt", "casino.example\n");
    let mut specs = f.specs.clone();
    specs.push(spec("more", Format::Domains, &extra, Some(Category::Games)));
    let (index, _) = compile(&specs, "", &NoProgress).unwrap();
    let m = lookup(&index, "casino.example");
    let names: Vec<&str> = m.iter().map(|m| index.source_name(m.source)).collect();
    assert_eq!(names, ["ut1", "more"]);
}

#[test]
fn saved_index_loads_back_identically_and_bad_files_are_refused() {
    let f = fixture();
    let (index, _) = compile(&f.specs, "when", &NoProgress).unwrap();
    let path = f._dir.path().join("idx/lists.havenidx");
    index.save(&path).unwrap();
    let loaded = ListIndex::load(&path).unwrap();
    assert_eq!(loaded.header().built_at, "when");
    for url in ["a.casino.example", "http://games.example/poker/x", "http://abuse.example/hidden/page.html", "gore1.example"] {
        assert_eq!(lookup(&loaded, url), lookup(&index, url), "{url}");
    }
    std::fs::write(&path, b"not an index").unwrap();
    let e = ListIndex::load(&path).unwrap_err().to_string();
    assert!(e.contains("haven lists import"), "{e}");
    let bytes = std::fs::read(f._dir.path().join("porn.hosts")).unwrap();
    assert!(ListIndex::from_bytes(bytes, Path::new("x")).is_err());
}

#[test]
fn a_missing_source_fails_the_import_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("gone", Format::Domains, &dir.path().join("nope.txt"), Some(Category::Games));
    let e = compile(&[s], "", &NoProgress).unwrap_err().to_string();
    assert!(e.contains("\"gone\"") && e.contains("does not exist"), "{e}");
}

#[test]
fn fingerprint_changes_when_a_list_file_changes() {
    let f = fixture();
    let before = haven_lists::fingerprint(&f.specs);
    assert_eq!(before, haven_lists::fingerprint(&f.specs));
    write(f._dir.path(), "vpn.txt", "vpn.example\nmore.example\nthird.example\n");
    assert_ne!(before, haven_lists::fingerprint(&f.specs));
}

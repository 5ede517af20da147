//! `haven sar export --person P --out FILE.zip`: a subject access export of
//! everything the record holds about one person, as a zip of JSON (one file
//! per kind of record, from `haven_store::sar`) with a readable HTML index
//! and the evidence files (opened with the record's key; `--no-evidence-files`
//! leaves them out where disclosing them would not be lawful, e.g. they
//! show someone else). The read is audited in the record (`sar.export`:
//! who exported whose, when, and how many of each kind).
//!
//! The zip is written here by hand (stored names in UTF-8, deflate from
//! `flate2`, CRC-32 from `crc32fast`), which is all a zip needs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use haven_store::sar::SubjectRecord;
use serde_json::Value;

use crate::{config_file, web};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    record: config_file::RecordArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write everything held about one person to a zip of JSON with an HTML index.
    Export {
        /// The person's login (a pupil's or a member of staff's), as alerts name them.
        #[arg(long)]
        person: String,
        /// The zip to write.
        #[arg(long)]
        out: PathBuf,
        /// Only this school's records (default: every school).
        #[arg(long)]
        school: Option<String>,
        /// Leave the evidence files out (where disclosing them would not be lawful, e.g. third-party data); their rows stay.
        #[arg(long)]
        no_evidence_files: bool,
        /// Who is making the export (their e-mail), kept in the audit log.
        #[arg(long)]
        by: Option<String>,
    },
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = args.record.load()?;
    let Command::Export { person, out, school, no_evidence_files, by } = args.command;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = web::open(&config).await?;
        let now = jiff::Timestamp::now();
        let actor = by.as_deref().map_or_else(|| "admin-cli".to_string(), |b| format!("admin-cli:{}", b.trim()));
        let record = store.subject_access(&person, school.as_deref(), &actor, now).await?;
        let evidence_dir = config.data_dir.join("evidence");
        let open = |sha: &str| -> Result<Vec<u8>> {
            let kept = std::fs::read(evidence_dir.join(sha)).with_context(|| format!("evidence file {sha}"))?;
            Ok(store.sealer()?.open_file(&kept)?)
        };
        let summary = write_export(&record, &out, !no_evidence_files, &open)?;
        say!(
            "wrote {}: {} for {} ({} evidence files included, {} left out)",
            out.display(),
            record.kinds.iter().filter(|k| !k.rows.is_empty()).map(|k| format!("{} {}", k.rows.len(), k.name)).collect::<Vec<_>>().join(", "),
            record.person,
            summary.included,
            summary.left_out
        );
        Ok(())
    })
}

/// How many evidence files went in and were left out.
pub(crate) struct Summary {
    pub(crate) included: usize,
    pub(crate) left_out: usize,
}

/// Writes the export of `record` to `out` (owner-only): `index.html`,
/// `manifest.json`, one `<kind>.json` per kind, and `evidence/…` files read
/// with `open` when `files` (never those withheld).
pub(crate) fn write_export(record: &SubjectRecord, out: &Path, files: bool, open: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<Summary> {
    let mut zip = ZipWriter::new(record.at);
    let mut summary = Summary { included: 0, left_out: 0 };
    let mut file_notes: Vec<(String, String, String)> = Vec::new();
    for f in &record.files {
        let why = if let Some(w) = f.withheld {
            Some(w.to_string())
        } else if !files {
            Some("left out by --no-evidence-files".to_string())
        } else {
            match open(&f.sha256) {
                Ok(bytes) => {
                    zip.add(&format!("evidence/{}", f.name), &bytes)?;
                    None
                }
                Err(e) => Some(format!("could not be read: {e:#}")),
            }
        };
        match &why {
            None => summary.included += 1,
            Some(_) => summary.left_out += 1,
        }
        file_notes.push((f.name.clone(), f.sha256.clone(), why.unwrap_or_default()));
    }
    for k in &record.kinds {
        zip.add(&format!("{}.json", k.name), &serde_json::to_vec_pretty(&k.rows)?)?;
    }
    let manifest = serde_json::json!({
        "person": record.person,
        "school": record.school,
        "exported_at": record.at.to_string(),
        "kinds": record.kinds.iter().map(|k| serde_json::json!({"file": format!("{}.json", k.name), "title": k.title, "records": k.rows.len()})).collect::<Vec<_>>(),
        "evidence_files": file_notes.iter().map(|(name, sha, why)| serde_json::json!({
            "file": if why.is_empty() { Value::String(format!("evidence/{name}")) } else { Value::Null },
            "sha256": sha,
            "left_out": if why.is_empty() { Value::Null } else { Value::String(why.clone()) },
        })).collect::<Vec<_>>(),
        "not_included": "DNS and web access logs are kept as files for the period in [retention] logs and are not part of the record; ask the IT lead for them with `haven logs`.",
    });
    let dated: Vec<Value> = chronology(record).into_iter().map(|(at, what, rec)| serde_json::json!({"at": at, "what": what, "record": rec})).collect();
    zip.add("chronology.json", &serde_json::to_vec_pretty(&dated)?)?;
    zip.add("manifest.json", &serde_json::to_vec_pretty(&manifest)?)?;
    zip.add("index.html", index_html(record, &file_notes).as_bytes())?;
    let bytes = zip.finish()?;
    haven_store::seal::write_owner_only(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(summary)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The readable index: each kind as a table, the files and why any are
/// left out, and a chronology of the dated records.
fn index_html(record: &SubjectRecord, files: &[(String, String, String)]) -> String {
    let mut h = String::new();
    let who = esc(&record.person);
    h.push_str(&format!(
        "<!doctype html><html lang=\"en-GB\"><head><meta charset=\"utf-8\"><title>Subject access export: {who}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}}table{{border-collapse:collapse;margin-bottom:2rem}}\
         th,td{{border:1px solid #999;padding:.25rem .5rem;vertical-align:top;text-align:left}}td{{white-space:pre-wrap}}</style></head><body>\
         <h1>Everything Haven holds about {who}</h1>\
         <p>Exported {} (UTC){}. Each section is also in this folder as JSON (<code>&lt;kind&gt;.json</code>); <code>manifest.json</code> lists them.</p>\
         <p>Before disclosing, check for information about other people (third-party data) and for anything an exemption covers; incidents marked <em>linked</em> are about someone else first.</p>\
         <p>Not included: DNS and web access logs, which are kept as files for a limited period and are not part of the record.</p><h2>Contents</h2><ul>",
        esc(&record.at.strftime("%Y-%m-%d %H:%M").to_string()),
        record.school.as_deref().map(|s| format!(", school {}", esc(s))).unwrap_or_else(|| ", every school".into())
    ));
    for k in &record.kinds {
        h.push_str(&format!("<li><a href=\"#{}\">{}</a>: {}</li>", k.name, esc(k.title), k.rows.len()));
    }
    h.push_str(&format!("<li><a href=\"#files\">Evidence files</a>: {}</li><li><a href=\"#chronology\">Chronology</a></li></ul>", files.len()));
    for k in &record.kinds {
        h.push_str(&format!("<h2 id=\"{}\">{} ({})</h2>", k.name, esc(k.title), k.rows.len()));
        if k.rows.is_empty() {
            h.push_str("<p>None.</p>");
            continue;
        }
        let mut cols: Vec<String> = Vec::new();
        for r in &k.rows {
            if let Some(o) = r.as_object() {
                for c in o.keys() {
                    if !cols.contains(c) {
                        cols.push(c.clone());
                    }
                }
            }
        }
        h.push_str("<table><thead><tr>");
        for c in &cols {
            h.push_str(&format!("<th scope=\"col\">{}</th>", esc(c)));
        }
        h.push_str("</tr></thead><tbody>");
        for r in &k.rows {
            h.push_str("<tr>");
            for c in &cols {
                let v = match r.get(c) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                };
                h.push_str(&format!("<td>{}</td>", esc(&v)));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<h2 id=\"files\">Evidence files</h2>");
    if files.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<table><thead><tr><th scope=\"col\">File</th><th scope=\"col\">SHA-256</th><th scope=\"col\">Included</th></tr></thead><tbody>");
        for (name, sha, why) in files {
            let cell = if why.is_empty() { format!("<a href=\"evidence/{0}\">evidence/{0}</a>", esc(name)) } else { format!("No: {}", esc(why)) };
            h.push_str(&format!("<tr><td>{}</td><td><code>{}</code></td><td>{cell}</td></tr>", esc(name), esc(sha)));
        }
        h.push_str("</tbody></table>");
    }
    let dated = chronology(record);
    h.push_str("<h2 id=\"chronology\">Chronology</h2><table><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">What</th><th scope=\"col\">Record</th></tr></thead><tbody>");
    for (at, what, rec) in &dated {
        h.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(at), esc(what), esc(rec)));
    }
    h.push_str("</tbody></table></body></html>\n");
    h
}

/// The chronology: every dated record, oldest first, as (when, what, which).
fn chronology(record: &SubjectRecord) -> Vec<(String, &'static str, String)> {
    let mut dated: Vec<(String, &'static str, String)> = Vec::new();
    for (kind, col, what) in [
        ("alerts", "received_at", "Alert raised"),
        ("alert_actions", "at", "Action on an alert"),
        ("incidents", "raised_at", "Incident raised"),
        ("incidents", "closed_at", "Incident closed"),
        ("incident_actions", "at", "Action on an incident"),
        ("evidence", "at", "Evidence added"),
        ("reports", "at", "Report"),
        ("filter_changes", "created_at", "Filtering change or request"),
        ("acceptances", "accepted_at", "Acceptable use agreement accepted"),
    ] {
        for r in record.rows(kind) {
            if let Some(at) = r.get(col).and_then(Value::as_str) {
                let id = r.get("id").map(Value::to_string).unwrap_or_default();
                dated.push((at.to_string(), what, format!("{kind} {id}")));
            }
        }
    }
    dated.sort();
    dated
}

/// A zip written in memory: deflated entries, UTF-8 names, no zip64
/// (an export over 4 GiB is refused).
pub(crate) struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
    time: u16,
    date: u16,
}

impl ZipWriter {
    pub(crate) fn new(at: jiff::Timestamp) -> Self {
        let d = at.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        let year = u16::try_from(d.year().clamp(1980, 2107) - 1980).unwrap_or(0);
        let date = (year << 9) | (u16::try_from(d.month()).unwrap_or(1) << 5) | u16::try_from(d.day()).unwrap_or(1);
        let time = (u16::try_from(d.hour()).unwrap_or(0) << 11) | (u16::try_from(d.minute()).unwrap_or(0) << 5) | (u16::try_from(d.second()).unwrap_or(0) / 2);
        Self { out: Vec::new(), central: Vec::new(), entries: 0, time, date }
    }

    pub(crate) fn add(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data)?;
        let packed = enc.finish()?;
        let crc = crc32fast::hash(data);
        let (Ok(csize), Ok(usize_), Ok(offset), Ok(nlen)) =
            (u32::try_from(packed.len()), u32::try_from(data.len()), u32::try_from(self.out.len()), u16::try_from(name.len()))
        else {
            bail!("the export is too large for a zip without zip64");
        };
        let Some(entries) = self.entries.checked_add(1) else { bail!("too many files for one zip") };
        // Bit 11: the name is UTF-8. Method 8: deflate.
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes());
            v.extend_from_slice(&0x0800u16.to_le_bytes());
            v.extend_from_slice(&8u16.to_le_bytes());
            v.extend_from_slice(&self.time.to_le_bytes());
            v.extend_from_slice(&self.date.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&csize.to_le_bytes());
            v.extend_from_slice(&usize_.to_le_bytes());
            v.extend_from_slice(&nlen.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        };
        let mut local = 0x0403_4b50u32.to_le_bytes().to_vec();
        common(&mut local);
        local.extend_from_slice(name.as_bytes());
        let mut central = 0x0201_4b50u32.to_le_bytes().to_vec();
        // Made by: Unix, zip 2.0.
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes());
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(0o100_600u32 << 16).to_le_bytes()); // a regular file, owner-only
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(&local);
        self.out.extend_from_slice(&packed);
        self.central.extend_from_slice(&central);
        self.entries = entries;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<Vec<u8>> {
        let (Ok(offset), Ok(size)) = (u32::try_from(self.out.len()), u32::try_from(self.central.len())) else {
            bail!("the export is too large for a zip without zip64");
        };
        self.out.extend_from_slice(&self.central);
        self.out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        self.out.extend_from_slice(&self.entries.to_le_bytes());
        self.out.extend_from_slice(&self.entries.to_le_bytes());
        self.out.extend_from_slice(&size.to_le_bytes());
        self.out.extend_from_slice(&offset.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_opens_with_a_standard_reader() {
        let mut z = ZipWriter::new("2026-12-06T10:20:30Z".parse().unwrap());
        z.add("a.json", b"[1, 2, 3]").unwrap();
        z.add("evidence/caf\u{e9}.txt", &vec![b'x'; 10_000]).unwrap();
        let bytes = z.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.zip");
        std::fs::write(&path, &bytes).unwrap();
        // Python's zipfile, where there is one, checks every CRC.
        if let Ok(out) = std::process::Command::new("python3").args(["-m", "zipfile", "-t"]).arg(&path).output() {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let list = std::process::Command::new("python3").args(["-m", "zipfile", "-l"]).arg(&path).output().unwrap();
            let list = String::from_utf8_lossy(&list.stdout);
            assert!(list.contains("evidence/caf\u{e9}.txt") && list.contains("2026-12-06 10:20:30"), "{list}");
        }
        // End of central directory: two entries.
        let eocd = &bytes[bytes.len() - 22..];
        assert_eq!(&eocd[..4], &0x0605_4b50u32.to_le_bytes());
        assert_eq!(u16::from_le_bytes([eocd[10], eocd[11]]), 2);
    }
}

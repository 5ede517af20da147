//! The DSL's queue at size (issue 16): a record with a million alerts over
//! a hundred thousand pupils at twenty schools, and the queue's server time
//! (the store's query and its true count, as every page computes both) for
//! the first page, a filtered page, a text search, a page deep behind
//! cursors, and a walk through every page by cursor; and a person's
//! chronology, first page and deep, for ordinary pupils and one with ten
//! thousand alerts.

use std::time::Instant;

use anyhow::{Context, Result};
use haven_store::chronology::ChronologyQuery;
use haven_store::incidents::IncidentQuery;
use haven_store::queue::{Assignee, QueueQuery, Sort};
use haven_store::{Role, Store};

/// Median and slowest of `runs` timings of `f`, in ms.
async fn time<F, Fut>(runs: usize, mut f: F) -> Result<(f64, f64, i64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64>>,
{
    let mut v = Vec::with_capacity(runs);
    let mut total = 0;
    for _ in 0..runs {
        let t = Instant::now();
        total = f().await?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    Ok((v[v.len() / 2], v[v.len() - 1], total))
}

pub(crate) fn run(database: Option<String>, alerts: i64, people: i64, analyze: bool, keep: Option<std::path::PathBuf>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let store = match &database {
            Some(url) => Store::open(url).await?,
            None => Store::open_dir(keep.as_deref().unwrap_or(dir.path())).await?,
        };
        let backend = if database.is_some() { "PostgreSQL" } else { "SQLite" };
        if database.is_some() {
            // A server's record has no folder beside it for the key that seals accounts' secrets.
            store.use_key_dir(&dir.path().join("keys"))?;
        }
        let now = jiff::Timestamp::now();
        for k in 0..20 {
            store.upsert_school(&format!("s{k}"), &format!("School {k}"), false).await?;
        }
        let (dsl, _) = store.add_account("dsl@s3.example", Role::Dsl, Some("s3"), "bench password", now).await?;
        let (lead, _) = store.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "bench password", now).await?;
        let start = now.checked_sub(jiff::SignedDuration::from_mins(alerts / 3 + 1)).context("start")?;
        let t = Instant::now();
        let made = store.fill_synthetic_alerts(alerts, people, start, dsl.id).await?;
        println!("{backend}: {made} alerts over {people} pupils at 20 schools stored in {:.1} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let named = store.fill_synthetic_people(people, now).await?;
        let incidents = store.fill_synthetic_incidents(alerts / 20, people, start, dsl.id).await?;
        println!("{backend}: {named} people in the directory and {incidents} incidents stored in {:.1} s", t.elapsed().as_secs_f64());
        if analyze {
            let t = Instant::now();
            store.analyze().await?;
            println!("{backend}: ANALYZE in {:.1} s", t.elapsed().as_secs_f64());
        }
        let page = |who: haven_store::people::Account, q: QueueQuery| {
            let store = store.clone();
            async move {
                let p = store.queue_page(&who, &q, jiff::Timestamp::now()).await?;
                Ok::<i64, anyhow::Error>(p.total)
            }
        };
        let runs = 11;
        let report = |name: &str, (median, max, total): (f64, f64, i64)| println!("{backend}: {name}: median {median:.1} ms, max {max:.1} ms (total {total})");
        report("trust lead, first page (50, not closed, most urgent)", time(runs, || page(lead.clone(), QueueQuery::default())).await?);
        report("school DSL, first page", time(runs, || page(dsl.clone(), QueueQuery::default())).await?);
        let filtered =
            QueueQuery { min_level: Some(4), max_level: Some(5), assignee: Some(Assignee::Nobody), status: Some("new".into()), ..Default::default() };
        report("school DSL, unassigned new level 4–5", time(runs, || page(dsl.clone(), filtered.clone())).await?);
        let category =
            QueueQuery { school: Some("s7".into()), category: Some("Grooming".into()), status: Some("all".into()), sort: Sort::Newest, ..Default::default() };
        report("trust lead, one school, one category, every state, newest", time(runs, || page(lead.clone(), category.clone())).await?);
        let mine = QueueQuery { assignee: Some(Assignee::Account(dsl.id)), overdue: true, ..Default::default() };
        report("school DSL, my overdue", time(runs, || page(dsl.clone(), mine.clone())).await?);
        let text = QueueQuery { text: Some("alone".into()), ..Default::default() };
        report("school DSL, text search \"alone\" (not closed)", time(runs, || page(dsl.clone(), text.clone())).await?);
        report(
            "trust lead, every state, newest (count of all)",
            time(runs, || page(lead.clone(), QueueQuery { status: Some("all".into()), sort: Sort::Newest, ..Default::default() })).await?,
        );

        let incidents = |who: haven_store::people::Account, q: IncidentQuery| {
            let store = store.clone();
            async move {
                let p = store.incidents(&who, &q, jiff::Timestamp::now()).await?;
                Ok::<i64, anyhow::Error>(p.total)
            }
        };
        let first = IncidentQuery { limit: 50, ..Default::default() };
        report("incidents: school DSL, first page (50, newest)", time(runs, || incidents(dsl.clone(), first.clone())).await?);
        report("incidents: trust lead, first page", time(runs, || incidents(lead.clone(), first.clone())).await?);
        let open = IncidentQuery { status: Some("open".into()), text: Some("bullying".into()), limit: 50, ..Default::default() };
        report("incidents: school DSL, open, text \"bullying\"", time(runs, || incidents(dsl.clone(), open.clone())).await?);
        let mut q = IncidentQuery { limit: 50, ..Default::default() };
        for _ in 0..20 {
            match store.incidents(&dsl, &q, jiff::Timestamp::now()).await?.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        report("incidents: school DSL, page 21 by cursor", time(runs, || incidents(dsl.clone(), q.clone())).await?);

        // A person's chronology, first page of every kind as the page reads
        // it (100), for pupils with an ordinary history and one with ten
        // thousand alerts of their own.
        let heavy = store.fill_synthetic_history("s3", "pupil3", 10_000, start).await?;
        println!("{backend}: pupil3 at s3 given {heavy} more alerts");
        let chronology = |who: haven_store::people::Account, person: &'static str, before: Option<String>| {
            let store = store.clone();
            async move {
                let q = ChronologyQuery { school: "s3".into(), person: person.into(), limit: 100, before, ..Default::default() };
                let c = store.chronology_page(&who, &q, jiff::Timestamp::now()).await?.context("the DSL reads s3")?;
                Ok::<i64, anyhow::Error>(c.entries.len() as i64)
            }
        };
        for person in ["pupil23", "pupil50003", "pupil99983", "pupil3"] {
            report(&format!("chronology: school DSL, {person}, first page (100)"), time(runs, || chronology(dsl.clone(), person, None)).await?);
        }
        let mut before = None;
        for _ in 0..50 {
            let q = ChronologyQuery { school: "s3".into(), person: "pupil3".into(), limit: 100, before: before.clone(), ..Default::default() };
            match store.chronology_page(&dsl, &q, jiff::Timestamp::now()).await?.context("the DSL reads s3")?.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        report("chronology: school DSL, pupil3, page 51 by cursor", time(runs, || chronology(dsl.clone(), "pupil3", before.clone())).await?);

        // Deep: walk every page of the trust's whole record by cursor, 500 at a time.
        let mut q = QueueQuery { status: Some("all".into()), sort: Sort::Newest, limit: 500, ..Default::default() };
        let mut times = Vec::new();
        let mut seen = 0usize;
        let mut deep = None;
        let t = Instant::now();
        loop {
            let t1 = Instant::now();
            let p = store.queue_page(&lead, &q, jiff::Timestamp::now()).await?;
            times.push(t1.elapsed().as_secs_f64() * 1000.0);
            seen += p.alerts.len();
            if times.len() == 1000 {
                deep = q.after.clone();
            }
            match p.next_cursor {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        let walk = t.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        println!(
            "{backend}: every state, newest, 500 a page, by cursor: {} pages, {seen} alerts in {walk:.1} s; page median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            times.len(),
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            times[times.len() - 1]
        );
        if let Some(c) = deep {
            let dq = QueueQuery { status: Some("all".into()), sort: Sort::Newest, limit: 50, after: Some(c), ..Default::default() };
            report("trust lead, page 1,000 deep by cursor (50)", time(runs, || page(lead.clone(), dq.clone())).await?);
        }
        store.close().await;
        Ok(())
    })
}

//! The safeguarding service's figures: ingest throughput (events per second
//! into SQLite, or PostgreSQL) and the alert-queue page's time with many
//! alerts stored.

use std::time::Instant;

use anyhow::Result;
use haven_store::{Role, Store};

fn texts(file: Option<&std::path::Path>) -> Vec<String> {
    let from_file: Vec<String> = file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|t| t.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["text"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if from_file.is_empty() {
        ["see you at practice", "i want to kill myself", "nobody likes you", "my number is 07700 900123", "what is the homework"].map(String::from).to_vec()
    } else {
        from_file
    }
}

pub(crate) fn run(database: Option<String>, events: usize, alerts: usize, data: Option<&std::path::Path>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let store = match &database {
            Some(url) => Store::open(url).await?,
            None => Store::open_dir(dir.path()).await?,
        };
        let backend = if database.is_some() { "PostgreSQL" } else { "SQLite" };
        store.upsert_school("oak", "Oak", false).await?;
        let now = jiff::Timestamp::now();
        let (device, _) = store.add_device("oak", "bench", now).await?;
        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        let texts = texts(data);
        // Ingest: one device, many pupils, the development set's texts.
        let t = Instant::now();
        let mut made = 0usize;
        for i in 0..events {
            let ev = haven_safeguard::ingest::Event {
                person: format!("pupil{}", i % 2000),
                text: texts[i % texts.len()].clone(),
                source: "typed".into(),
                url: None,
                observed_at: None,
                screenshot: None,
                title: None,
                idempotency_key: None,
            };
            made += service.ingest(&device, &ev, jiff::Timestamp::now()).await?.alerts.len();
        }
        let secs = t.elapsed().as_secs_f64();
        println!("{backend}: ingest {events} events in {secs:.2} s = {:.0} events/s (one client; {made} alerts made or joined)", events as f64 / secs);
        // The queue page with many alerts stored.
        let t = Instant::now();
        for i in 0..alerts {
            let level = (i % 5 + 1) as u8;
            let a = haven_store::alerts::NewAlert {
                school: "oak".into(),
                person: format!("p{}", i % 5000),
                category: haven_textscan::Concern::ALL[i % 8].name().into(),
                level,
                due_at: Some(now.saturating_add(jiff::SignedDuration::from_secs((i % 100_000) as i64)).unwrap_or(now)),
                first: haven_store::alerts::NewOccurrence {
                    at: now,
                    level,
                    source: "typed".into(),
                    excerpt: "synthetic".into(),
                    url: None,
                    explanation: "synthetic".into(),
                    spans: "[]".into(),
                    screenshot: None,
                    screenshot_withheld: false,
                    repeats: 1,
                },
            };
            store.insert_alert(&a).await?;
        }
        println!("{backend}: stored {alerts} more alerts in {:.1} s", t.elapsed().as_secs_f64());
        let (dsl, secret) = store.add_account("bench@oak.example", Role::Dsl, Some("oak"), "bench password", now).await?;
        let cookie = store.start_session(&dsl, now).await?;
        let code = haven_store::sessions::totp_code(secret.as_deref().unwrap_or_default(), jiff::Timestamp::now()).unwrap_or_default();
        // The signed-in session has a new id once the second factor is given.
        let haven_store::sessions::Factor::Ok(cookie) = store.second_factor(&cookie, &code, jiff::Timestamp::now()).await? else {
            anyhow::bail!("the bench account's second factor was refused");
        };
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse()?]).await?[0];
        let url = format!("http://{addr}/alerts");
        let times = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            for _ in 0..21 {
                let t = Instant::now();
                let r = ureq::get(&url).header("cookie", &format!("haven_session={cookie}")).call();
                let ok = r.is_ok_and(|mut r| r.body_mut().read_to_string().is_ok_and(|b| b.contains("most urgent first")));
                v.push((t.elapsed().as_secs_f64() * 1000.0, ok));
            }
            v
        })
        .await?;
        let mut ms: Vec<f64> = times.iter().filter(|(_, ok)| *ok).map(|(m, _)| *m).collect();
        ms.sort_by(f64::total_cmp);
        if let Some(m) = ms.get(ms.len() / 2) {
            println!(
                "{backend}: alert-queue page with {} alerts stored: median {m:.1} ms, max {:.1} ms ({} loads)",
                alerts + made,
                ms.last().unwrap_or(m),
                ms.len()
            );
        }
        store.close().await;
        Ok(())
    })
}

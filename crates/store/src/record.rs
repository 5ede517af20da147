//! One event, one transaction: the alert (or the occurrence that joins an
//! open one), its audit row, its outbox rows, the report it came from and the
//! event's idempotency key are written together or not at all. A crash between
//! two of them can no longer leave an alert that nobody is told about.

use jiff::Timestamp;
use sqlx::{AnyConnection, Row};

use crate::alerts::{NewAlert, NewOccurrence, OpenRow};
use crate::reports::NewReport;
use crate::{Backend, Store, StoreError, ms, ts};

/// A write transaction on the record. Dropped without [`commit`](Self::commit), nothing is kept.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Store {
    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads then writes never
    /// fails half-way because another writer came first.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool().begin().await?,
        };
        Ok(Tx { tx })
    }
}

impl Tx {
    /// Keeps everything written in this transaction.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// A person's open alerts at a school (for grouping repeats).
    pub async fn open_alerts(&mut self, school: &str, person: &str) -> Result<Vec<OpenRow>, StoreError> {
        let rows = sqlx::query("SELECT id, category, level, last_seen FROM alerts WHERE school = $1 AND person = $2 AND status <> 'closed'")
            .bind(school)
            .bind(person)
            .fetch_all(self.conn())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenRow {
                    id: r.try_get("id")?,
                    category: r.try_get("category")?,
                    level: u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(1),
                    last_seen: ts(r.try_get("last_seen")?),
                })
            })
            .collect()
    }

    /// Stores a new alert and its first occurrence; returns the alert's id.
    pub async fn insert_alert(&mut self, a: &NewAlert) -> Result<i64, StoreError> {
        let o = &a.first;
        // The alert row keeps its first finding's evidence as its summary.
        let query = sqlx::query(
            "INSERT INTO alerts (school, person, category, level, status, received_at, due_at, last_seen, occurrences, urgency, source, excerpt, url, explanation, spans, screenshot, screenshot_withheld) \
             VALUES ($1, $2, $3, $4, 'open', $5, $6, $5, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .bind(&a.school)
        .bind(&a.person)
        .bind(&a.category)
        .bind(i64::from(a.level))
        .bind(ms(o.at))
        .bind(a.due_at.map(ms))
        .bind(i64::from(o.repeats.max(1)))
        .bind(crate::queue::urgency(a.level, a.due_at));
        let id: i64 = with_summary(query, o).fetch_one(self.conn()).await?.try_get(0)?;
        self.add_occurrence(id, o).await?;
        Ok(id)
    }

    async fn add_occurrence(&mut self, alert: i64, o: &NewOccurrence) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO occurrences (alert, at, level, source, excerpt, url, spans, explanation, screenshot, screenshot_withheld, repeats) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(alert)
        .bind(ms(o.at))
        .bind(i64::from(o.level))
        .bind(&o.source)
        .bind(&o.excerpt)
        .bind(&o.url)
        .bind(&o.spans)
        .bind(&o.explanation)
        .bind(&o.screenshot)
        .bind(i64::from(o.screenshot_withheld))
        .bind(i64::from(o.repeats.max(1)))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Adds a finding to an open alert, keeping its own evidence, and raises
    /// the alert's level and deadline when `raise` says so (reopening it).
    /// A raising finding also becomes the alert's summary: the DSL opening a
    /// level-5 alert must first see the words that made it level 5, not the
    /// milder message that opened it (both stay among the occurrences).
    pub async fn join_alert(&mut self, id: i64, o: &NewOccurrence, raise: Option<(u8, Option<Timestamp>)>) -> Result<(), StoreError> {
        let repeats = i64::from(o.repeats.max(1));
        match raise {
            Some((level, due)) => {
                let query = sqlx::query(
                    "UPDATE alerts SET occurrences = occurrences + $2, last_seen = CASE WHEN last_seen > $3 THEN last_seen ELSE $3 END, level = $4, due_at = $5, urgency = $6, status = 'open', \
                     source = $7, excerpt = $8, url = $9, explanation = $10, spans = $11, screenshot = $12, screenshot_withheld = $13 WHERE id = $1",
                )
                .bind(id)
                .bind(repeats)
                .bind(ms(o.at))
                .bind(i64::from(level))
                .bind(due.map(ms))
                .bind(crate::queue::urgency(level, due));
                with_summary(query, o).execute(self.conn()).await?
            }
            None => {
                sqlx::query("UPDATE alerts SET occurrences = occurrences + $2, last_seen = CASE WHEN last_seen > $3 THEN last_seen ELSE $3 END WHERE id = $1")
                    .bind(id)
                    .bind(repeats)
                    .bind(ms(o.at))
                    .execute(self.conn())
                    .await?
            }
        };
        self.add_occurrence(id, o).await
    }

    /// Appends an audit entry.
    pub async fn audit(&mut self, at: Timestamp, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
        crate::audit::append(self.conn(), at, actor, action, object, detail).await
    }

    /// Queues a notice about `alert`; returns its id.
    pub async fn enqueue(&mut self, alert: i64, name: &str, channel: &str, target: &str, due_at: Timestamp, callout: bool) -> Result<i64, StoreError> {
        crate::alerts::enqueue_on(self.conn(), alert, name, channel, target, due_at, callout, "alert").await
    }

    /// What an earlier event with this idempotency key became, if one was taken.
    pub async fn recall(&mut self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT outcome FROM ingest_keys WHERE scope = $1 AND key = $2").bind(scope).bind(key).fetch_optional(self.conn()).await?)
    }

    /// Remembers what the event with this idempotency key became.
    pub async fn remember(&mut self, scope: &str, key: &str, at: Timestamp, outcome: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO ingest_keys (scope, key, at, outcome) VALUES ($1, $2, $3, $4)")
            .bind(scope)
            .bind(key)
            .bind(ms(at))
            .bind(outcome)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Keeps a report from a person; returns its id.
    pub async fn insert_report(&mut self, r: &NewReport) -> Result<i64, StoreError> {
        crate::reports::insert_on(self.conn(), r).await
    }

    /// Links a report to the alert it raised.
    pub async fn link_report(&mut self, report: i64, alert: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE reports SET alert = $2 WHERE id = $1").bind(report).bind(alert).execute(self.conn()).await?;
        Ok(())
    }
}

/// Binds the evidence an alert shows as its summary, in the order of the
/// summary columns: source, excerpt, url, explanation, spans, screenshot,
/// screenshot_withheld (a new alert's first finding, or the one that raised it).
fn with_summary<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    o: &'q NewOccurrence,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query.bind(&o.source).bind(&o.excerpt).bind(&o.url).bind(&o.explanation).bind(&o.spans).bind(&o.screenshot).bind(i64::from(o.screenshot_withheld))
}

//! `[host_model]`: whether the hostname model may block sites no list
//! names, and at what confidence per category; `host_model = false` on a
//! `[[school]]` switches it off there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use haven_policy::Category;
use serde::Deserialize;
use toml::Spanned;

/// `[host_model]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHostModel {
    pub(crate) enabled: Option<bool>,
    /// A model file of the trust's own (default: the one Haven ships).
    pub(crate) model: Option<String>,
    /// `{ adult = 0.6, gambling = 0.5 }`: the categories the model may
    /// decide and the confidence each needs; replaces the defaults whole.
    pub(crate) thresholds: Option<BTreeMap<String, Spanned<f32>>>,
}

/// `[host_model]`, checked.
#[derive(Debug, Clone, Default)]
pub struct HostModelSettings {
    /// Whether the model is used at all (default: yes).
    pub enabled: bool,
    /// The trust's own model file, if not the shipped one.
    pub model: Option<PathBuf>,
    /// The categories the model may decide, as written; `None` takes the
    /// model's calibrated thresholds for its default categories.
    pub thresholds: Option<Vec<(Category, f32)>>,
}

impl crate::errors::Problems<'_> {
    pub(crate) fn host_model(&mut self, raw: &RawHostModel, base: &std::path::Path) -> HostModelSettings {
        let thresholds = raw.thresholds.as_ref().map(|t| {
            t.iter()
                .filter_map(|(id, value)| {
                    let Some(c) = Category::from_id(id) else {
                        self.at(value.span(), format!("[host_model] thresholds: {id:?} is not a category"), Some("`haven lists categories` lists them".into()));
                        return None;
                    };
                    let v = *value.get_ref();
                    if !(0.0..=1.0).contains(&v) || v < 0.3 {
                        self.at(
                            value.span(),
                            format!("[host_model] thresholds: {v} for {id} is not a confidence the model can be trusted at"),
                            Some("write a number from 0.3 to 1.0 (higher blocks less)".into()),
                        );
                        return None;
                    }
                    Some((c, v))
                })
                .collect()
        });
        HostModelSettings { enabled: raw.enabled.unwrap_or(true), model: raw.model.as_ref().map(|m| base.join(m)), thresholds }
    }
}

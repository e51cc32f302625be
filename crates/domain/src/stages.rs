//! Journey stages: the ordered phases marketers draw as a straight funnel (awareness,
//! consideration, purchase, retention, advocacy) and which touchpoint belongs to which. Scribble
//! metrics compare real journeys against this order; touchpoints without a stage are ignored there.

use std::collections::HashMap;

use serde::Deserialize;

use crate::event::FieldError;

/// One stage as a project's config gives it: `{"name": "awareness", "touchpoints": ["ad_click"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StageSpec {
    pub name: String,
    #[serde(default)]
    pub touchpoints: Vec<String>,
}

/// Ordered stages and the stage of each known touchpoint. Deserializes from a list of
/// [`StageSpec`] in stage order, with the same checks as [`StageMap::new`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<StageSpec>")]
pub struct StageMap {
    names: Vec<String>,
    stage_by_touchpoint: HashMap<String, usize>,
}

impl StageMap {
    /// Builds a map from `(stage name, touchpoints)` in stage order. Fails, naming the offending
    /// entry, when there are no stages, a stage name is empty or repeated, or a touchpoint is
    /// listed under two different stages.
    pub fn new(stages: Vec<(String, Vec<String>)>) -> Result<Self, FieldError> {
        if stages.is_empty() {
            return Err(FieldError::new("stages", "must list at least one stage"));
        }
        let mut names: Vec<String> = Vec::with_capacity(stages.len());
        let mut stage_by_touchpoint = HashMap::new();
        for (index, (name, touchpoints)) in stages.into_iter().enumerate() {
            if name.trim().is_empty() {
                return Err(FieldError::new(
                    format!("stages[{index}].name"),
                    "must not be empty",
                ));
            }
            if names.contains(&name) {
                return Err(FieldError::new(
                    format!("stages[{index}].name"),
                    format!("stage {name:?} is listed twice; give each stage once"),
                ));
            }
            for (position, touchpoint) in touchpoints.into_iter().enumerate() {
                if let Some(&other) = stage_by_touchpoint.get(&touchpoint) {
                    if other != index {
                        return Err(FieldError::new(
                            format!("stages[{index}].touchpoints[{position}]"),
                            format!("{touchpoint:?} already belongs to stage {:?}; a touchpoint has one stage", names[other]),
                        ));
                    }
                }
                stage_by_touchpoint.insert(touchpoint, index);
            }
            names.push(name);
        }
        Ok(Self {
            names,
            stage_by_touchpoint,
        })
    }

    /// The stage index (0 = first stage) of a touchpoint, or `None` when it has no stage.
    pub fn stage_of(&self, touchpoint_name: &str) -> Option<usize> {
        self.stage_by_touchpoint.get(touchpoint_name).copied()
    }

    /// The name of stage `stage`. Panics when `stage` did not come from this map.
    pub fn stage_name(&self, stage: usize) -> &str {
        &self.names[stage]
    }
}

impl TryFrom<Vec<StageSpec>> for StageMap {
    type Error = FieldError;

    fn try_from(specs: Vec<StageSpec>) -> Result<Self, Self::Error> {
        Self::new(
            specs
                .into_iter()
                .map(|spec| (spec.name, spec.touchpoints))
                .collect(),
        )
    }
}

impl Default for StageMap {
    /// The five classic stages with Scribble's well-known touchpoints.
    fn default() -> Self {
        const DEFAULT: [(&str, &[&str]); 5] = [
            (
                "awareness",
                &["ad_impression", "ad_click", "social_post", "review_read"],
            ),
            (
                "consideration",
                &[
                    "site_visit",
                    "email_open",
                    "email_click",
                    "newsletter_open",
                    "chat_started",
                    "form_submit",
                    "store_visit",
                    "webinar",
                ],
            ),
            ("purchase", &["purchase"]),
            (
                "retention",
                &["support_ticket", "chat_support", "email_receipt", "login"],
            ),
            ("advocacy", &["review_written", "referral", "nps_response"]),
        ];
        let stages = DEFAULT
            .iter()
            .map(|(name, touchpoints)| {
                (
                    name.to_string(),
                    touchpoints
                        .iter()
                        .map(|touchpoint| touchpoint.to_string())
                        .collect(),
                )
            })
            .collect();
        Self::new(stages).expect("the default stages are consistent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_stages_place_well_known_touchpoints_in_order() {
        let stages = StageMap::default();
        let stage = |touchpoint| {
            stages
                .stage_of(touchpoint)
                .map(|index| stages.stage_name(index))
        };
        assert_eq!(stage("ad_click"), Some("awareness"));
        assert_eq!(stage("review_read"), Some("awareness"));
        assert_eq!(stage("chat_started"), Some("consideration"));
        assert_eq!(stage("purchase"), Some("purchase"));
        assert_eq!(stage("login"), Some("retention"));
        assert_eq!(stage("nps_response"), Some("advocacy"));
        assert_eq!(stage("page_scroll"), None);
        assert_eq!(stages.stage_of("site_visit"), Some(1));
    }

    #[test]
    fn config_deserializes_in_stage_order() {
        let stages: StageMap = serde_json::from_str(
            r#"[{"name": "discover", "touchpoints": ["webinar"]},
                {"name": "buy", "touchpoints": ["purchase", "quote_signed"]},
                {"name": "stay"}]"#,
        )
        .unwrap();
        assert_eq!(stages.stage_of("webinar"), Some(0));
        assert_eq!(stages.stage_of("quote_signed"), Some(1));
        assert_eq!(stages.stage_name(2), "stay");
        assert_eq!(stages.stage_of("ad_click"), None);
    }

    #[test]
    fn inconsistent_configs_are_rejected_with_the_entry_named() {
        let stage = |name: &str, touchpoints: &[&str]| {
            (
                name.to_owned(),
                touchpoints
                    .iter()
                    .map(|touchpoint| touchpoint.to_string())
                    .collect(),
            )
        };
        let field = |stages| StageMap::new(stages).unwrap_err().field;
        assert_eq!(field(vec![]), "stages");
        assert_eq!(
            field(vec![stage("a", &["x"]), stage(" ", &[])]),
            "stages[1].name"
        );
        assert_eq!(
            field(vec![stage("a", &["x"]), stage("a", &[])]),
            "stages[1].name"
        );
        assert_eq!(
            field(vec![stage("a", &["x"]), stage("b", &["y", "x"])]),
            "stages[1].touchpoints[1]"
        );
        assert!(
            StageMap::new(vec![stage("a", &["x", "x"])]).is_ok(),
            "a repeat within one stage is harmless"
        );

        let error =
            serde_json::from_str::<StageMap>(r#"[{"name": "a"}, {"name": "a"}]"#).unwrap_err();
        assert!(error.to_string().contains("stages[1].name"), "{error}");
    }
}

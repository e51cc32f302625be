//! `scribble forget`: erases a customer through a running query API (`DELETE
//! /v1/customers/{id}`, with the project's read key) and says what was erased.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::Value;

use crate::cli::ForgetArgs;
use crate::report::{refusal, urlencode};

pub fn run(args: ForgetArgs) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/customers/{}",
        args.client.api.trim_end_matches('/'),
        urlencode(&args.identity)
    );
    let response = reqwest::blocking::Client::new()
        .delete(&url)
        .bearer_auth(&args.client.read_key)
        .send()
        .with_context(|| {
            format!("cannot reach the query API at {url}; is `scribble serve` (or `scribble api`) running?")
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(refusal(response));
    }
    let answer: Value = response
        .json()
        .context("the query API's answer is not JSON")?;
    println!("{}", summary(&answer, status));
    Ok(())
}

/// What the answer to a forget says, in one or two lines.
fn summary(answer: &Value, status: StatusCode) -> String {
    let identities: Vec<&str> = answer["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut text = format!(
        "forgot customer {}: {} events, identities {} (tombstoned: later events naming them are dropped)",
        answer["customer_id"].as_str().unwrap_or("?"),
        answer["events"],
        identities.join(", ")
    );
    if status == StatusCode::ACCEPTED {
        text.push_str("\nthe store is still deleting in the background; reports stop showing the customer once it is done");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_names_the_customer_its_identities_and_unfinished_deletes() {
        let answer = json!({"customer_id": "u:ann", "identities": ["u:ann", "a:c1"], "events": 7, "complete": false});
        let done = summary(&answer, StatusCode::OK);
        assert_eq!(
            done,
            "forgot customer u:ann: 7 events, identities u:ann, a:c1 (tombstoned: later events naming them are dropped)"
        );
        let pending = summary(&answer, StatusCode::ACCEPTED);
        assert!(
            pending.starts_with(&done) && pending.contains("still deleting"),
            "{pending}"
        );
    }
}

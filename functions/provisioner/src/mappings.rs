//! Event source mappings as AWS reports them: the paginated listing, the read-back after every
//! create or update, and what a mapping's `State`, `StateTransitionReason` and
//! `LastProcessingResult` mean for the status API ([`interpret`], pure).

use anyhow::anyhow;
use aws_sdk_lambda::{Client, types::EventSourceMappingConfiguration};

/// Codes Lambda puts in `StateTransitionReason` when it stops an Amazon MQ consumer
/// ("Troubleshoot Amazon MQ event source mapping errors",
/// https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html).
const STOPPED_BY_LAMBDA: [&str; 4] = [
    "ESM_CONFIG_NOT_VALID",
    "EVENT_SOURCE_AUTHN_ERROR",
    "EVENT_SOURCE_AUTHZ_ERROR",
    "FUNCTION_CONFIG_NOT_VALID",
];

/// What the status API shows for a mapping: `applied`, `pending` (in transition: re-read on
/// the next reconcile) or `failed` (re-applied on the next reconcile) with why.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub state: &'static str,
    pub error: Option<String>,
}

/// The mapping's state as AWS reported it, against what we asked for (`enabled`). The states
/// are those GetEventSourceMapping documents: Creating, Enabling, Enabled, Disabling,
/// Disabled, Updating, Deleting
/// (https://docs.aws.amazon.com/lambda/latest/api/API_GetEventSourceMapping.html).
pub fn interpret(
    aws_state: Option<&str>,
    transition_reason: Option<&str>,
    last_processing_result: Option<&str>,
    enabled: bool,
) -> Verdict {
    let why = |headline: String| {
        let mut parts = vec![headline];
        if let Some(r) = transition_reason.filter(|r| !r.is_empty()) {
            parts.push(format!("StateTransitionReason: {r}"));
        }
        if let Some(r) = last_processing_result.filter(|r| !r.is_empty()) {
            parts.push(format!("LastProcessingResult: {r}"));
        }
        Verdict {
            state: "failed",
            error: Some(parts.join("; ")),
        }
    };
    let stopped = transition_reason.is_some_and(|r| STOPPED_BY_LAMBDA.contains(&r));
    let ok = Verdict {
        state: "applied",
        error: None,
    };
    match (aws_state, enabled) {
        (Some("Creating" | "Enabling" | "Updating" | "Disabling"), _) => Verdict {
            state: "pending",
            error: None,
        },
        (Some("Enabled"), true) if !stopped => ok,
        (Some("Disabled"), false) => ok,
        (Some("Enabled"), true) => why("Lambda stopped the consumer".into()),
        (Some("Disabled"), true) => why("AWS reports the mapping Disabled, asked Enabled".into()),
        (Some("Enabled"), false) => why("AWS reports the mapping Enabled, asked Disabled".into()),
        (Some("Deleting"), _) => why("the mapping is being deleted".into()),
        (Some(other), _) => why(format!("unexpected mapping state {other}")),
        (None, _) => why("AWS reported no state for the mapping".into()),
    }
}

/// Every mapping of `function` (optionally from one event source), all pages.
pub async fn list(
    lambda: &Client,
    function: &str,
    event_source: Option<&str>,
) -> Result<Vec<EventSourceMappingConfiguration>, aws_sdk_lambda::Error> {
    let mut pages = lambda
        .list_event_source_mappings()
        .function_name(function)
        .set_event_source_arn(event_source.map(str::to_string))
        .into_paginator()
        .items()
        .send();
    let mut out = Vec::new();
    while let Some(m) = pages.next().await {
        out.push(m?);
    }
    Ok(out)
}

/// A mapping's state, read back by its UUID.
pub struct ReadBack {
    pub aws_state: Option<String>,
    pub transition_reason: Option<String>,
    pub last_processing_result: Option<String>,
}

impl ReadBack {
    pub fn verdict(&self, enabled: bool) -> Verdict {
        interpret(
            self.aws_state.as_deref(),
            self.transition_reason.as_deref(),
            self.last_processing_result.as_deref(),
            enabled,
        )
    }
}

pub async fn read_back(lambda: &Client, uuid: &str) -> anyhow::Result<ReadBack> {
    let m = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .map_err(|e| anyhow!("GetEventSourceMapping {uuid}: {e:?}"))?;
    Ok(ReadBack {
        aws_state: m.state,
        transition_reason: m.state_transition_reason,
        last_processing_result: m.last_processing_result,
    })
}

#[cfg(test)]
mod tests {
    //! Response shapes from the AWS documentation: the `State` values and fields of
    //! GetEventSourceMapping (https://docs.aws.amazon.com/lambda/latest/api/API_GetEventSourceMapping.html),
    //! the `StateTransitionReason` codes of a stopped Amazon MQ consumer
    //! (https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html).

    use super::*;

    #[test]
    fn a_mapping_in_the_state_asked_for_is_applied() {
        let v = interpret(Some("Enabled"), Some("USER_INITIATED"), Some("OK"), true);
        assert_eq!(v.state, "applied");
        let v = interpret(Some("Disabled"), Some("USER_INITIATED"), None, false);
        assert_eq!(v.state, "applied");
    }

    #[test]
    fn transitions_are_pending() {
        for s in ["Creating", "Enabling", "Updating", "Disabling"] {
            assert_eq!(
                interpret(Some(s), Some("USER_INITIATED"), None, true).state,
                "pending"
            );
        }
    }

    #[test]
    fn a_mapping_lambda_disabled_is_failed_with_its_reason() {
        let v = interpret(
            Some("Disabled"),
            Some("EVENT_SOURCE_AUTHN_ERROR"),
            Some("PROBLEM: Connection error."),
            true,
        );
        assert_eq!(v.state, "failed");
        let e = v.error.unwrap();
        assert!(e.contains("EVENT_SOURCE_AUTHN_ERROR"), "{e}");
        assert!(e.contains("PROBLEM: Connection error."), "{e}");
    }

    #[test]
    fn a_stopped_consumer_is_failed_even_while_enabled() {
        let v = interpret(Some("Enabled"), Some("ESM_CONFIG_NOT_VALID"), None, true);
        assert_eq!(v.state, "failed");
    }

    #[test]
    fn another_state_than_asked_or_none_is_failed() {
        assert_eq!(
            interpret(Some("Enabled"), None, None, false).state,
            "failed"
        );
        assert_eq!(
            interpret(Some("Deleting"), None, None, true).state,
            "failed"
        );
        assert_eq!(interpret(None, None, None, true).state, "failed");
    }
}

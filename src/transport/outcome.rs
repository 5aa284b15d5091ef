//! How results are built: a finished action judged (`Response: Error` becomes an error
//! carrying what arrived), the synthetic outcomes of local operations, and the errors of a
//! connection that ended.

use crate::error::{Error, Result};
use crate::proto::{Message, Outcome};

pub(super) fn closed() -> Error {
    Error::Closed {
        reason: "the client is closed".into(),
    }
}

pub(super) fn lost(reason: impl Into<String>) -> Error {
    Error::ConnectionLost {
        reason: reason.into(),
    }
}

/// Turns a finished action into the caller's result: `Response: Error`, or an originate whose
/// `OriginateResponse` says Failure, becomes `ActionFailed` carrying everything that arrived.
pub(super) fn judge(action: &str, outcome: Outcome) -> Result<Outcome> {
    if outcome.is_success() {
        return Ok(outcome);
    }
    let message = match &outcome.complete {
        Some(c) if c.has_value("Response", "Failure") => {
            format!(
                "OriginateResponse Failure, Reason {}",
                c.get("Reason").as_deref().unwrap_or("?")
            )
        }
        _ => outcome
            .response
            .get("Message")
            .map(|m| m.into_owned())
            .unwrap_or_else(|| "Response: Error".into()),
    };
    let mut events = outcome.events;
    events.extend(outcome.complete);
    Err(Error::ActionFailed {
        action: action.to_owned(),
        message,
        response: Box::new(outcome.response),
        events,
    })
}

/// The outcome of a local operation (login done, close done): a synthetic response.
pub(super) fn local_outcome(text: &[u8]) -> Outcome {
    let response = Message::parse_one(text).expect("a static message parses");
    Outcome {
        response,
        events: Vec::new(),
        complete: None,
    }
}

pub(super) fn clone_err(e: &Error) -> Error {
    match e {
        Error::ConnectionLost { reason } => Error::ConnectionLost {
            reason: reason.clone(),
        },
        Error::Closed { reason } => Error::Closed {
            reason: reason.clone(),
        },
        other => Error::Internal(other.to_string()),
    }
}

//! The one mapping from `crate::Error` to the Python exception hierarchy of
//! `amiwire.exceptions` (defined in Python so the classes can carry attributes under abi3).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{DecodeError, Error};

pyo3::import_exception!(amiwire.exceptions, AMIError);
pyo3::import_exception!(amiwire.exceptions, RemoteProtocolError);
pyo3::import_exception!(amiwire.exceptions, LocalProtocolError);
pyo3::import_exception!(amiwire.exceptions, ConnectionLost);
pyo3::import_exception!(amiwire.exceptions, ClientClosed);
pyo3::import_exception!(amiwire.exceptions, AuthenticationError);
pyo3::import_exception!(amiwire.exceptions, ActionError);
pyo3::import_exception!(amiwire.exceptions, ActionTimeout);
pyo3::import_exception!(amiwire.exceptions, ListTooLong);
pyo3::import_exception!(amiwire.exceptions, InternalError);

/// Builds `cls(message, **kwargs)`; falls back to `InternalError` if that fails.
fn with_kwargs(
    cls: Bound<'_, pyo3::types::PyType>,
    message: String,
    kwargs: Bound<'_, PyDict>,
) -> PyErr {
    match cls.call((message.clone(),), Some(&kwargs)) {
        Ok(instance) => PyErr::from_value(instance),
        Err(_) => InternalError::new_err(message),
    }
}

pub fn decode_error(py: Python<'_>, err: &DecodeError) -> PyErr {
    let kwargs = PyDict::new(py);
    let _ = kwargs.set_item("kind", err.kind.as_str());
    let _ = kwargs.set_item("offset", err.offset);
    let _ = kwargs.set_item("message_offset", err.message_offset);
    with_kwargs(
        py.get_type::<RemoteProtocolError>(),
        err.to_string(),
        kwargs,
    )
}

/// The keywords of an action given up on: its ActionID and, as `partial`, the response and the
/// items that had arrived.
fn given_up<'py>(
    py: Python<'py>,
    action_id: String,
    partial: Option<Box<crate::proto::Outcome>>,
) -> Bound<'py, PyDict> {
    let kwargs = PyDict::new(py);
    let _ = kwargs.set_item("action_id", action_id);
    if let Some(outcome) = partial {
        let mut items = vec![super::message::to_py(py, outcome.response)];
        items.extend(
            outcome
                .events
                .into_iter()
                .map(|m| super::message::to_py(py, m)),
        );
        let _ = kwargs.set_item("partial", items);
    }
    kwargs
}

pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let text = err.to_string();
    match err {
        Error::Io(_) | Error::ConnectionLost { .. } => ConnectionLost::new_err(text),
        Error::Closed { .. } => ClientClosed::new_err(text),
        Error::Protocol(decode) => decode_error(py, &decode),
        Error::Remote(_) => RemoteProtocolError::new_err(text),
        Error::Usage(_) => LocalProtocolError::new_err(text),
        Error::Auth(_) => AuthenticationError::new_err(text),
        Error::ActionFailed {
            response, events, ..
        } => {
            let kwargs = PyDict::new(py);
            let action_id = response.action_id().map(|s| s.into_owned());
            let _ = kwargs.set_item("action_id", action_id);
            let _ = kwargs.set_item("response", super::message::to_py(py, *response));
            let events: Vec<_> = events
                .into_iter()
                .map(|m| super::message::to_py(py, m))
                .collect();
            let _ = kwargs.set_item("events", events);
            with_kwargs(py.get_type::<ActionError>(), text, kwargs)
        }
        Error::Timeout {
            action_id, partial, ..
        } => {
            let kwargs = given_up(py, action_id, partial);
            with_kwargs(py.get_type::<ActionTimeout>(), text, kwargs)
        }
        Error::ListTooLong {
            action_id,
            limit,
            partial,
            ..
        } => {
            let kwargs = given_up(py, action_id, partial);
            let _ = kwargs.set_item("limit", limit);
            with_kwargs(py.get_type::<ListTooLong>(), text, kwargs)
        }
        Error::Internal(_) => InternalError::new_err(text),
    }
}

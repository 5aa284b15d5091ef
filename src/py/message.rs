//! `amiwire.Message`: a read-only, case-insensitive Mapping over one decoded message.
//! (Minimal skeleton; the full API lands with the parser work.)

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::proto;

#[pyclass(name = "Message", module = "amiwire", frozen)]
pub struct PyMessage {
    pub(crate) inner: proto::Message,
    /// For an action's response: the list items (empty otherwise).
    events: Option<Py<PyList>>,
    /// For an action's response: the list's completion event or the OriginateResponse.
    complete: Option<Py<PyMessage>>,
}

#[pymethods]
impl PyMessage {
    /// List items of an action's response (empty for plain responses and events).
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        match &self.events {
            Some(list) => list.bind(py).clone(),
            None => PyList::empty(py),
        }
    }

    /// The list's completion event, or a tracked originate's OriginateResponse.
    #[getter]
    fn complete(&self, py: Python<'_>) -> Option<Py<PyMessage>> {
        self.complete.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.event_name().map(|s| s.into_owned())
    }
}

pub fn to_py(py: Python<'_>, message: proto::Message) -> Py<PyAny> {
    match Py::new(
        py,
        PyMessage {
            inner: message,
            events: None,
            complete: None,
        },
    ) {
        Ok(obj) => obj.into_any(),
        Err(_) => py.None(),
    }
}

pub fn to_py_list(py: Python<'_>, messages: Vec<proto::Message>) -> Bound<'_, PyList> {
    PyList::new(py, messages.into_iter().map(|m| to_py(py, m)))
        .unwrap_or_else(|_| PyList::empty(py))
}

/// An action's result: the response Message carrying `.events` and `.complete`.
pub fn outcome_to_py(py: Python<'_>, outcome: proto::Outcome) -> Py<PyAny> {
    let events = to_py_list(py, outcome.events).unbind();
    let complete = outcome.complete.and_then(|m| {
        Py::new(
            py,
            PyMessage {
                inner: m,
                events: None,
                complete: None,
            },
        )
        .ok()
    });
    match Py::new(
        py,
        PyMessage {
            inner: outcome.response,
            events: Some(events),
            complete,
        },
    ) {
        Ok(obj) => obj.into_any(),
        Err(_) => py.None(),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMessage>()
}

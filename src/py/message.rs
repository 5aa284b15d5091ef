//! `amiwire.Message`: a read-only, case-insensitive Mapping over one decoded message.
//! (Minimal skeleton; the full API lands with the parser work.)

use pyo3::prelude::*;

use crate::proto;

#[pyclass(name = "Message", module = "amiwire", frozen)]
pub struct PyMessage {
    pub(crate) inner: proto::Message,
}

#[pymethods]
impl PyMessage {
    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.event_name().map(|s| s.into_owned())
    }
}

pub fn to_py(py: Python<'_>, message: proto::Message) -> Py<PyAny> {
    match Py::new(py, PyMessage { inner: message }) {
        Ok(obj) => obj.into_any(),
        Err(_) => py.None(),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMessage>()
}

//! Typed events: the subclasses of `Message` generated from Asterisk's AMI schema
//! (`amiwire.events`), and the descriptor their attributes are made of.
//!
//! A typed event is the same lazy, lossless Message, only of a subclass: a decoded event
//! whose name is documented is created as an instance of its class (`event_classes.rs`,
//! generated) instead of `Message`. The classes are Rust ones so that making one costs what a
//! plain Message costs: a Python subclass would be made through `type.__call__` and tracked by
//! the garbage collector, which measured about 100 ns more per event. Nothing is copied; an
//! attribute reads its header from the wire bytes when it is accessed, as `m[key]` does.

use pyo3::PyClass;
use pyo3::exceptions::{PyAttributeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use super::event_classes::EVENT_CLASSES;
use super::message::PyMessage;
use crate::proto::event_type::EVENT_NAMES;
use crate::proto::{EventType, decode_text};

/// Makes a typed event of a message.
pub(super) type Maker = for<'py> fn(Python<'py>, PyMessage) -> PyResult<Bound<'py, PyAny>>;
/// An event class as generated: its maker and its type object, at the position of its event
/// among `proto::EventType`'s documented names.
pub(super) type EventClass = (Maker, for<'py> fn(Python<'py>) -> Bound<'py, PyType>);

// Both tables are generated from the same list; a stale one fails the build here.
const _: () = assert!(EVENT_CLASSES.len() == EVENT_NAMES.len());

pub(super) fn make<'py, T>(py: Python<'py>, message: PyMessage) -> PyResult<Bound<'py, PyAny>>
where
    T: PyClass<BaseType = PyMessage> + Default,
{
    let init = PyClassInitializer::from(message).add_subclass(T::default());
    Ok(Bound::new(py, init)?.into_any())
}

pub(super) fn class_of<T: PyClass>(py: Python<'_>) -> Bound<'_, PyType> {
    py.get_type::<T>()
}

/// `message` as an instance of its documented event's class, or as a plain Message. The
/// decoder has already named the event (`proto::EventType`), so this reads no wire bytes.
pub(super) fn wrap(py: Python<'_>, message: PyMessage) -> PyResult<Bound<'_, PyAny>> {
    let maker = message
        .inner
        .event_type()
        .index()
        .and_then(|i| EVENT_CLASSES.get(i));
    match maker {
        Some(&(make, _)) => make(py, message),
        None => Ok(Bound::new(py, message)?.into_any()),
    }
}

/// The documented name of an event spelled as documented, as one shared string: `.name`
/// then needs neither the wire bytes nor the string cache.
pub(super) fn documented_name(py: Python<'_>, event: EventType) -> Option<Bound<'_, PyString>> {
    static NAMES: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
    if !event.spelled_as_documented() {
        return None;
    }
    let names = NAMES.get_or_init(py, || {
        EVENT_NAMES
            .iter()
            .map(|name| PyString::intern(py, name).unbind())
            .collect()
    });
    names.get(event.index()?).map(|name| name.bind(py).clone())
}

/// `{event name as documented: class}` for every typed event (`amiwire.events` adds their
/// attributes).
#[pyfunction]
fn event_classes(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let classes = PyDict::new(py);
    for (name, &(_, class)) in EVENT_NAMES.iter().zip(EVENT_CLASSES) {
        classes.set_item(name, class(py))?;
    }
    Ok(classes)
}

/// One documented header of a typed event, as an attribute: reads the header's first value
/// when accessed (as `event[name]` does), as text or, for a header the docs give as a number,
/// as an int. A header the event does not carry raises AttributeError.
#[pyclass(module = "amiwire._core", frozen)]
pub struct HeaderField {
    header: String,
    integer: bool,
}

impl HeaderField {
    fn missing(&self, message: &Bound<'_, PyAny>) -> PyErr {
        let kind = message
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyAttributeError::new_err(format!("this {kind} has no {} header", self.header))
    }
}

#[pymethods]
impl HeaderField {
    #[new]
    #[pyo3(signature = (header, integer = false))]
    fn new(header: String, integer: bool) -> HeaderField {
        HeaderField { header, integer }
    }

    /// The header's wire name, as documented.
    #[getter]
    fn header(&self) -> &str {
        &self.header
    }

    /// Whether the value is read as an int.
    #[getter]
    fn integer(&self) -> bool {
        self.integer
    }

    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        instance: Option<&Bound<'py, PyAny>>,
        owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = owner;
        let py = slf.py();
        let Some(instance) = instance.filter(|i| !i.is_none()) else {
            return Ok(slf.clone().into_any());
        };
        let this = slf.get();
        let message = instance.cast::<PyMessage>()?;
        let Some(value) = message.get().inner.get_bytes(&this.header) else {
            return Err(this.missing(instance));
        };
        if !this.integer {
            return Ok(PyString::new(py, &decode_text(value)).into_any());
        }
        match parse_int(value) {
            Some(n) => Ok(n.into_pyobject(py)?.into_any()),
            None => Err(PyValueError::new_err(format!(
                "{} is {:?}, not an integer (event[{:?}] has the text)",
                this.header,
                decode_text(value),
                this.header
            ))),
        }
    }

    fn __repr__(&self) -> String {
        let kind = if self.integer { "int" } else { "str" };
        format!("HeaderField({:?}, {kind})", self.header)
    }
}

/// A decimal integer as Asterisk writes one (`%d`): an optional sign and digits.
fn parse_int(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(event_classes, m)?)?;
    m.add_class::<HeaderField>()
}

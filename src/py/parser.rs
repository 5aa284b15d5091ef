//! `amiwire.Parser`, `amiwire.parse()` and `amiwire.encode_action()`: the sans-IO core for
//! Python code that does its own I/O (a capture file, an asyncio Protocol, a test).

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};

use super::errors::{decode_error, to_pyerr};
use super::message::to_py_list;
use crate::error::DecodeError;
use crate::proto::{self, Action, Decoder, Limits};

/// Incremental AMI decoder: bytes in, `Message`s out, whatever the chunking.
///
/// A message that breaks a limit never costs the stream: the decoder skips it up to the next
/// blank line. With `errors="raise"` (the default) `feed` raises `RemoteProtocolError` for it,
/// and the messages decoded before it in the same call are kept: the next `feed()` or
/// `drain()` returns them first, then continues after the bad message (each error is raised
/// once, in stream order). With `errors="skip"` bad messages are dropped silently and only
/// counted in `error_count`.
#[pyclass(name = "Parser", module = "amiwire")]
pub struct PyParser {
    decoder: Decoder,
    /// Messages decoded before an error was raised, returned by the next call.
    pending: Vec<proto::Message>,
    skip_errors: bool,
}

impl PyParser {
    /// Frames everything complete. Detached from the interpreter: framing a large chunk
    /// takes a while and touches no Python object.
    fn decode<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let skip = self.skip_errors;
        let decoder = &mut self.decoder;
        let mut out = std::mem::take(&mut self.pending);
        let error = py.detach(|| {
            decoder.feed(data);
            frame(decoder, skip, &mut out)
        });
        match error {
            Some(err) => {
                self.pending = out;
                Err(decode_error(py, &err))
            }
            None => Ok(to_py_list(py, out)),
        }
    }
}

/// Decodes into `out` up to the first error (returned) or until more bytes are needed.
fn frame(decoder: &mut Decoder, skip: bool, out: &mut Vec<proto::Message>) -> Option<DecodeError> {
    while let Some(item) = decoder.next_message() {
        match item {
            Ok(message) => out.push(message),
            Err(_) if skip => {}
            Err(err) => return Some(err),
        }
    }
    None
}

#[pymethods]
impl PyParser {
    /// `max_line`, `max_lines`, `max_message`: limits per line (bytes), per message (lines,
    /// bytes); None keeps the default (256 KiB, 16384, 8 MiB). `end_markers`: the lines
    /// that end a legacy `Response: Follows` body (default `["--END COMMAND--"]`).
    /// `expect_banner`: treat a first line without a colon as the banner (see `banner`).
    /// `errors`: `"raise"` or `"skip"` (see the class docstring).
    #[new]
    #[pyo3(signature = (*, max_line = None, max_lines = None, max_message = None, end_markers = None, expect_banner = true, errors = "raise"))]
    fn new(
        max_line: Option<usize>,
        max_lines: Option<usize>,
        max_message: Option<usize>,
        end_markers: Option<Vec<String>>,
        expect_banner: bool,
        errors: &str,
    ) -> PyResult<PyParser> {
        let skip_errors = match errors {
            "raise" => false,
            "skip" => true,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "errors must be \"raise\" or \"skip\", not {other:?}"
                )));
            }
        };
        let defaults = Limits::default();
        let mut decoder = Decoder::with_limits(Limits {
            max_line: max_line.unwrap_or(defaults.max_line),
            max_lines: max_lines.unwrap_or(defaults.max_lines),
            max_message: max_message.unwrap_or(defaults.max_message),
        });
        decoder.set_expect_banner(expect_banner);
        if let Some(markers) = end_markers {
            decoder.set_end_markers(markers);
        }
        Ok(PyParser {
            decoder,
            pending: Vec::new(),
            skip_errors,
        })
    }

    /// Adds bytes (`bytes` or `bytearray`); returns every message now complete (see the
    /// class docstring for errors).
    fn feed<'py>(&mut self, py: Python<'py>, data: PyBackedBytes) -> PyResult<Bound<'py, PyList>> {
        self.decode(py, &data)
    }

    /// Returns what is complete without adding bytes: after `feed` raised, the messages
    /// decoded before the error and those after it (or the next error).
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.decode(py, b"")
    }

    /// The banner line (`Asterisk Call Manager/11.0.0`), once seen.
    #[getter]
    fn banner(&self) -> Option<&str> {
        self.decoder.banner()
    }

    /// Messages dropped for breaking a limit so far (raised or skipped).
    #[getter]
    fn error_count(&self) -> u64 {
        self.decoder.error_count()
    }

    /// Bytes held for a message that is not complete yet.
    #[getter]
    fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Stream offset of the next byte to be fed.
    #[getter]
    fn offset(&self) -> u64 {
        self.decoder.stream_offset()
    }
}

/// Decodes a complete byte string (a capture, a test vector); same options as `Parser`.
/// With `errors="raise"` the first bad message raises and the call returns nothing: use
/// `errors="skip"` or a `Parser` to keep the others. An unterminated last message (no
/// closing blank line) is not returned.
#[pyfunction]
#[pyo3(signature = (data, *, max_line = None, max_lines = None, max_message = None, end_markers = None, expect_banner = true, errors = "raise"))]
#[allow(clippy::too_many_arguments)]
fn parse<'py>(
    py: Python<'py>,
    data: PyBackedBytes,
    max_line: Option<usize>,
    max_lines: Option<usize>,
    max_message: Option<usize>,
    end_markers: Option<Vec<String>>,
    expect_banner: bool,
    errors: &str,
) -> PyResult<Bound<'py, PyList>> {
    let mut parser = PyParser::new(
        max_line,
        max_lines,
        max_message,
        end_markers,
        expect_banner,
        errors,
    )?;
    parser.decode(py, &data)
}

/// The wire bytes of an action: `Action`, then `ActionID` (the `action_id` argument, else an
/// `ActionID` entry in `headers`), then the headers in order. `headers` is a Mapping or an
/// iterable of (name, value) pairs; pairs allow repeats (`Variable`). Raises
/// `LocalProtocolError` for CR, LF or NUL anywhere (header injection), an empty name or one
/// with ':', and lines or actions beyond Asterisk's input limits. The error names the
/// header, never its value.
#[pyfunction]
#[pyo3(signature = (name, headers = None, action_id = None))]
fn encode_action<'py>(
    py: Python<'py>,
    name: String,
    headers: Option<&Bound<'py, PyAny>>,
    action_id: Option<String>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut action = Action::new(name);
    if let Some(headers) = headers {
        let pairs = if headers.hasattr("items")? {
            headers.call_method0("items")?
        } else {
            headers.clone()
        };
        for pair in pairs.try_iter()? {
            let (key, value): (String, String) = pair?.extract()?;
            action.push(key, value);
        }
    }
    if let Some(id) = action_id {
        // Set on the action (not passed to `encode`) so that it is validated like any id.
        action = action.with_action_id(id);
    }
    let bytes = action.to_bytes(None).map_err(|e| to_pyerr(py, e.into()))?;
    Ok(PyBytes::new(py, &bytes))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyParser>()?;
    m.add_function(wrap_pyfunction!(parse, m)?)?;
    m.add_function(wrap_pyfunction!(encode_action, m)?)?;
    Ok(())
}

//! `amiwire.Message`: a read-only, case-insensitive `Mapping[str, str]` over one decoded
//! message. It wraps `proto::Message` (the wire bytes plus a line index) and makes Python
//! strings only when a value is read, so a parsed message costs little more than its bytes.
//!
//! Text policy (`proto::decode_text`): UTF-8 when valid, otherwise Latin-1, which maps every
//! byte to one character, so nothing is dropped (`get_bytes` and `raw` give the exact bytes).

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList, PyString, PyType};

use crate::proto::event_type::ends;
use crate::proto::{self, decode_text};

/// What `repr` and `_repr_html_` show instead of a secret header's value (`Secret`, `Key`, …).
const MASK: &str = "********";

/// A read-only, case-insensitive `Mapping[str, str]` over one decoded AMI message.
///
/// `m[key]` and `get` give the first value of a repeated header, `get_all` every value, and
/// `to_dict()` maps a repeated name to the list of its values. Iteration yields each distinct
/// name once, in its first-seen spelling. Values are decoded when read: UTF-8, or Latin-1 when
/// the bytes are not valid UTF-8 (lossless: `value.encode("latin-1")` gives them back);
/// `get_bytes` and `raw` give the exact bytes. `repr` and `_repr_html_` mask the values of
/// secret headers (`Secret`, `Key`, `Password`, `Md5Cred`, …). A Message equals another with
/// the same wire bytes, or a Mapping with the same items. A documented event arrives as its
/// subclass from `amiwire.events` (see `typed.rs`).
#[pyclass(name = "Message", module = "amiwire", frozen, mapping, subclass)]
pub struct PyMessage {
    pub(crate) inner: proto::Message,
    /// Only on an action's result: its list items and completion (or OriginateResponse).
    /// Boxed so that the many plain events pay one pointer for it.
    outcome: Option<Box<OutcomeParts>>,
}

struct OutcomeParts {
    events: Py<PyList>,
    complete: Option<Py<PyMessage>>,
}

// ---- cached strings ------------------------------------------------------------------------
//
// Header names, event names and most short values come from a small vocabulary (`Up`, `en`,
// `call,all`, `<unknown>`...), so their Python strings are cached instead of being built for
// every message: `to_dict()` on an event stream is mostly string building otherwise, and a
// cached key also keeps its hash for the dict insert. A direct-mapped table keyed by a
// case-folded hash keeps a lookup to one hash and one byte comparison; a collision simply
// replaces the slot. Long values (ids, channel names, timestamps) are rarely repeated and
// bypass it.

const CACHE_BITS: u32 = 11;
/// Values up to this many bytes go through the cache in `to_dict()`.
const SHORT_VALUE: usize = 12;

type Slot = Option<(Box<[u8]>, Py<PyString>)>;

static STRINGS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

/// A hash equal for names that match ASCII case-insensitively: the first and last 8 bytes
/// with bit 0x20 set (the only bit where a letter differs from its other case) and the
/// length. Header names are short and mostly differ in length or at one end.
fn folded_hash(name: &[u8]) -> u64 {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let (head, tail) = ends(name);
    ((head | FOLD) ^ (tail | FOLD).rotate_left(29) ^ name.len() as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Byte equality without a `memcmp` call for short strings (the cache's hot path): two
/// words cover up to 16 bytes exactly once the lengths match.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            ends(a) == ends(b)
        } else {
            a == b
        }
}

fn text<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    PyString::new(py, &decode_text(bytes))
}

/// The string cache, held for one operation. `try_lock` rather than `lock`: the cache is only
/// an optimisation, so contention (another thread) or re-entry (a finaliser run while a
/// dict is allocated) makes fresh strings instead of waiting or deadlocking.
struct Strings(Option<MutexGuard<'static, Vec<Slot>>>);

impl Strings {
    fn lock() -> Strings {
        let guard = STRINGS.try_lock().ok().map(|mut cache| {
            if cache.is_empty() {
                cache.resize_with(1 << CACHE_BITS, || None);
            }
            cache
        });
        Strings(guard)
    }

    fn get<'py>(&mut self, py: Python<'py>, name: &[u8], hash: u64) -> Bound<'py, PyString> {
        let slot = self
            .0
            .as_mut()
            .and_then(|cache| cache.get_mut((hash >> (64 - CACHE_BITS)) as usize));
        match slot {
            Some(Some((bytes, s))) if same_bytes(bytes, name) => s.bind(py).clone(),
            Some(slot) => {
                let s = text(py, name);
                *slot = Some((name.into(), s.clone().unbind()));
                s
            }
            None => text(py, name),
        }
    }
}

fn cached_name<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    Strings::lock().get(py, name, folded_hash(name))
}

/// Where `name` is among the distinct names seen so far (case-insensitively).
fn find_name(seen: &[(u64, &[u8])], hash: u64, name: &[u8]) -> Option<usize> {
    seen.iter()
        .position(|&(h, first)| h == hash && first.eq_ignore_ascii_case(name))
}

/// Distinct header names in first-seen order (first spelling), with their hashes.
fn distinct_names(message: &proto::Message) -> Vec<(u64, &[u8])> {
    let mut seen = Vec::with_capacity(32);
    for h in message.headers() {
        let hash = folded_hash(h.name);
        if find_name(&seen, hash, h.name).is_none() {
            seen.push((hash, h.name));
        }
    }
    seen
}

/// `{name: value}` in first-seen order, a list of values for a repeated name; with `mask`
/// (for `repr`) secret values are replaced.
fn to_dict<'py>(
    py: Python<'py>,
    message: &proto::Message,
    mask: bool,
) -> PyResult<Bound<'py, PyDict>> {
    enum Values<'py> {
        One(Bound<'py, PyString>),
        Many(Bound<'py, PyList>),
    }
    let mut strings = Strings::lock();
    let mut seen: Vec<(u64, &[u8])> = Vec::with_capacity(32);
    let mut values: Vec<(Bound<'py, PyString>, Values<'py>)> = Vec::with_capacity(32);
    for h in message.headers() {
        // A secret never enters the process-wide cache.
        let secret = proto::message::is_secret_header(h.name);
        let value = if mask && secret {
            PyString::new(py, MASK)
        } else if h.value.len() <= SHORT_VALUE && !secret {
            strings.get(py, h.value, folded_hash(h.value))
        } else {
            text(py, h.value)
        };
        let hash = folded_hash(h.name);
        match find_name(&seen, hash, h.name).and_then(|i| values.get_mut(i)) {
            None => {
                seen.push((hash, h.name));
                values.push((strings.get(py, h.name, hash), Values::One(value)));
            }
            Some((_, entry)) => match entry {
                Values::Many(list) => list.append(value)?,
                Values::One(first) => {
                    let list = PyList::new(py, [first.clone(), value])?;
                    *entry = Values::Many(list);
                }
            },
        }
    }
    drop(strings);
    let dict = PyDict::new(py);
    for (key, value) in values {
        match value {
            Values::One(v) => dict.set_item(key, v)?,
            Values::Many(list) => dict.set_item(key, list)?,
        }
    }
    Ok(dict)
}

/// Matches a Python key against header names. Names that are not UTF-8 were decoded as
/// Latin-1, so a key also matches its Latin-1 bytes: every key that iteration yields can be
/// looked up again.
struct KeyMatcher<'k> {
    utf8: &'k [u8],
    latin1: Option<Vec<u8>>,
}

impl<'k> KeyMatcher<'k> {
    fn new(key: &'k str) -> KeyMatcher<'k> {
        let latin1 = (!key.is_ascii())
            .then(|| {
                key.chars()
                    .map(|c| u8::try_from(u32::from(c)).ok())
                    .collect()
            })
            .flatten();
        KeyMatcher {
            utf8: key.as_bytes(),
            latin1,
        }
    }

    fn matches(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(self.utf8)
            || self
                .latin1
                .as_deref()
                .is_some_and(|l| name.eq_ignore_ascii_case(l))
    }
}

impl PyMessage {
    /// The first value of a header, if `key` is a str naming one.
    fn first(&self, key: &Bound<'_, PyAny>) -> Option<&[u8]> {
        let key = key.cast::<PyString>().ok()?.to_str().ok()?;
        let m = KeyMatcher::new(key);
        self.inner
            .headers()
            .find(|h| m.matches(h.name))
            .map(|h| h.value)
    }

    fn text_of<'py>(&self, py: Python<'py>, name: &str) -> Option<Bound<'py, PyString>> {
        self.inner.get_bytes(name).map(|v| text(py, v))
    }
}

fn html_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

/// One message as a table (see `_repr_html_`).
fn html_table(message: &proto::Message, html: &mut String) {
    html.push_str("<table class=\"amiwire-message\">");
    for h in message.headers() {
        html.push_str("<tr><th>");
        html_escape(&decode_text(h.name), html);
        html.push_str("</th><td>");
        if proto::message::is_secret_header(h.name) {
            html.push_str(MASK);
        } else {
            html_escape(&decode_text(h.value), html);
        }
        html.push_str("</td></tr>");
    }
    for line in message.unparsed_lines() {
        html.push_str("<tr><td colspan=\"2\">");
        html_escape(&decode_text(line), html);
        html.push_str("</td></tr>");
    }
    html.push_str("</table>");
    if let Some(body) = message.body() {
        html.push_str("<pre>");
        html_escape(&decode_text(body), html);
        html.push_str("</pre>");
    }
}

/// List items shown in a notebook; a runaway list would make a page no browser renders.
const HTML_ITEMS: usize = 1000;

/// An action's items and completion, each in a collapsed `<details>` under the response.
fn html_outcome(parts: &OutcomeParts, py: Python<'_>, html: &mut String) {
    let events = parts.events.bind(py);
    let count = events.len();
    if count > 0 {
        let noun = if count == 1 { "item" } else { "items" };
        html.push_str(&format!(
            "<details class=\"amiwire-events\"><summary>{count} {noun}</summary>"
        ));
        // The list is the user's (`.events`): anything but a Message in it is skipped.
        for item in events.iter().take(HTML_ITEMS) {
            if let Ok(message) = item.cast::<PyMessage>() {
                html_table(&message.get().inner, html);
            }
        }
        if count > HTML_ITEMS {
            html.push_str(&format!(
                "<p>… and {} more (see <code>.events</code>)</p>",
                count - HTML_ITEMS
            ));
        }
        html.push_str("</details>");
    }
    if let Some(complete) = &parts.complete {
        let complete = &complete.get().inner;
        html.push_str("<details class=\"amiwire-complete\"><summary>");
        html_escape(&complete.event_name().unwrap_or_default(), html);
        html.push_str("</summary>");
        html_table(complete, html);
        html.push_str("</details>");
    }
}

#[pymethods]
impl PyMessage {
    // A Mapping is not hashable (equality follows the content, like dict's).
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    /// For an action's response: the list items, in order (empty for anything else).
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        match &self.outcome {
            Some(parts) => parts.events.bind(py).clone(),
            None => PyList::empty(py),
        }
    }

    /// For an action's response: the list's completion event, or a tracked originate's
    /// OriginateResponse; None otherwise.
    #[getter]
    fn complete(&self, py: Python<'_>) -> Option<Py<PyMessage>> {
        self.outcome
            .as_ref()
            .and_then(|p| p.complete.as_ref().map(|c| c.clone_ref(py)))
    }

    /// The event name (`Event:` value) for events, else None.
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        if let Some(name) = super::typed::documented_name(py, self.inner.event_type()) {
            return Some(name);
        }
        self.inner.event_name_bytes().map(|v| cached_name(py, v))
    }

    #[getter]
    fn is_event(&self) -> bool {
        self.inner.is_event()
    }

    #[getter]
    fn is_response(&self) -> bool {
        self.inner.is_response()
    }

    /// The `Response:` value (`Success`, `Error`, `Follows`, `Goodbye`) for responses.
    #[getter]
    fn response<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        if !self.inner.is_response() {
            return None;
        }
        self.inner.get_bytes("Response").map(|v| cached_name(py, v))
    }

    #[getter]
    fn action_id<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.text_of(py, "ActionID")
    }

    /// The exact bytes received, closing blank line included.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.raw())
    }

    /// Stream offset of the message's first byte.
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset()
    }

    /// Lines without a colon, in order (not the legacy Command body).
    #[getter]
    fn unparsed_lines<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyString>> {
        self.inner.unparsed_lines().map(|l| text(py, l)).collect()
    }

    /// The legacy (Asterisk <= 13) `Response: Follows` CLI text, end marker excluded.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.inner.body().map(|b| text(py, b))
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> Option<Bound<'py, PyAny>> {
        match self.first(key) {
            Some(v) => Some(text(py, v).into_any()),
            None => default,
        }
    }

    /// Every value of `key`, in wire order (empty when absent).
    fn get_all<'py>(&self, py: Python<'py>, key: &str) -> Vec<Bound<'py, PyString>> {
        let m = KeyMatcher::new(key);
        self.inner
            .headers()
            .filter(|h| m.matches(h.name))
            .map(|h| text(py, h.value))
            .collect()
    }

    /// The first value of `key` as the exact bytes received.
    fn get_bytes<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> Option<Bound<'py, PyBytes>> {
        self.first(key).map(|v| PyBytes::new(py, v))
    }

    /// `{name: value}` in wire order; a name that repeats maps to the list of its values.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        to_dict(py, &self.inner, false)
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyString>> {
        match self.first(key) {
            Some(v) => Ok(text(py, v)),
            None => Err(pyo3::exceptions::PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> bool {
        self.first(key).is_some()
    }

    /// The number of distinct header names.
    fn __len__(&self) -> usize {
        distinct_names(&self.inner).len()
    }

    /// Distinct header names in their first-seen spelling.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        let mut strings = Strings::lock();
        let keys = distinct_names(&self.inner)
            .into_iter()
            .map(|(hash, name)| strings.get(py, name, hash));
        PyList::new(py, keys)?.try_iter()
    }

    fn keys<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        view(slf, &KEYS_VIEW, "KeysView")
    }

    fn values<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        view(slf, &VALUES_VIEW, "ValuesView")
    }

    fn items<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        view(slf, &ITEMS_VIEW, "ItemsView")
    }

    /// Equal to a Message with the same wire bytes, or to a Mapping with the same items
    /// (first value per name, as `Mapping.__eq__` compares).
    fn __eq__<'py>(slf: &Bound<'py, Self>, other: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Ok(other) = other.cast::<PyMessage>() {
            let equal = slf.get().inner.raw() == other.get().inner.raw();
            return Ok(equal.into_pyobject(py)?.to_owned().into_any().unbind());
        }
        let mapping = MAPPING.import(py, "collections.abc", "Mapping")?;
        if !other.is_instance(mapping)? {
            return Ok(py.NotImplemented());
        }
        let mine = PyDict::from_sequence(&Self::items(slf)?)?;
        let theirs = PyDict::from_sequence(&other.call_method0("items")?)?;
        Ok(mine
            .eq(theirs)?
            .into_pyobject(py)?
            .to_owned()
            .into_any()
            .unbind())
    }

    /// Shows the class and every header; secret values (`Secret`, `Key`, `Password`, …) are
    /// masked.
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let dict = to_dict(slf.py(), &slf.get().inner, true)?;
        Ok(format!("{}({})", slf.get_type().name()?, dict.repr()?))
    }

    /// An HTML table for Jupyter: every header line in order, escaped, secrets masked. An
    /// action's list items and its completion event follow, collapsed.
    fn _repr_html_(&self, py: Python<'_>) -> String {
        let mut html = String::new();
        html_table(&self.inner, &mut html);
        if let Some(parts) = &self.outcome {
            html_outcome(parts, py, &mut html);
        }
        html
    }

    /// Object size plus the bytes and line index it owns (for memory accounting).
    fn __sizeof__(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let basic: usize = slf.get_type().getattr("__basicsize__")?.extract()?;
        Ok(basic + slf.get().inner.heap_size())
    }
}

static MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static KEYS_VIEW: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static VALUES_VIEW: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ITEMS_VIEW: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The standard `collections.abc` views: set-like keys and items, exactly as for a dict.
fn view<'py>(
    slf: &Bound<'py, PyMessage>,
    cell: &PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.import(slf.py(), "collections.abc", name)?
        .call1((slf,))
}

/// Wraps one message, as its typed event class when it has one. Only allocation can fail
/// here; a message then becomes `None`.
pub fn to_py(py: Python<'_>, message: proto::Message) -> Py<PyAny> {
    let message = PyMessage {
        inner: message,
        outcome: None,
    };
    match super::typed::wrap(py, message) {
        Ok(obj) => obj.unbind(),
        Err(_) => py.None(),
    }
}

/// An action's result: the response Message carrying `.events` and `.complete` (a plain
/// response, as most are, carries no parts at all).
pub fn outcome_to_py(py: Python<'_>, outcome: proto::Outcome) -> Py<PyAny> {
    let parts = if outcome.events.is_empty() && outcome.complete.is_none() {
        None
    } else {
        let events = to_py_list(py, outcome.events).unbind();
        let complete = outcome.complete.and_then(|m| {
            let made = to_py(py, m).into_bound(py);
            made.cast_into::<PyMessage>().ok().map(Bound::unbind)
        });
        Some(Box::new(OutcomeParts { events, complete }))
    };
    match Py::new(
        py,
        PyMessage {
            inner: outcome.response,
            outcome: parts,
        },
    ) {
        Ok(obj) => obj.into_any(),
        Err(_) => py.None(),
    }
}

/// Wraps a batch (an event batch from the client, a parser feed) into one list.
pub fn to_py_list(py: Python<'_>, messages: Vec<proto::Message>) -> Bound<'_, PyList> {
    let items = messages.into_iter().map(|m| to_py(py, m).into_bound(py));
    // Only converting an element can fail, and `Bound<PyAny>` converts infallibly.
    PyList::new(py, items).unwrap_or_else(|_| PyList::empty(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMessage>()
}

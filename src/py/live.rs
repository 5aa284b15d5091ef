//! The live state for Python: read-only snapshots (`LiveSnapshot`, whose `channels`, `bridges`
//! and `calls` are `LiveMap`s over the Rust maps, converting an entry only when it is read) and
//! the change stream's items (`LiveChange`). Every object here is immutable: a snapshot never
//! changes after it was taken, whatever the PBX does next.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::proto::live::{
    Bridge, BridgeFields, Call, Change, Channel, ChannelFields, HangupCause, Map, View,
};

/// One live channel, as of the snapshot or change it came from.
#[pyclass(module = "amiwire._core", name = "LiveChannel", frozen)]
pub struct PyChannel(Arc<Channel>);

#[pymethods]
impl PyChannel {
    #[getter]
    fn uniqueid(&self) -> &str {
        &self.0.uniqueid
    }
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }
    #[getter]
    fn linkedid(&self) -> &str {
        &self.0.linkedid
    }
    /// Asterisk's channel state number (`ChannelState`: 4 Ring, 5 Ringing, 6 Up, ...).
    #[getter]
    fn state(&self) -> u8 {
        self.0.state.0
    }
    /// The state's name, as Asterisk spells it in `ChannelStateDesc`.
    #[getter]
    fn state_desc(&self) -> &'static str {
        self.0.state.description()
    }
    #[getter]
    fn caller_id_num(&self) -> &str {
        &self.0.caller_id.number
    }
    #[getter]
    fn caller_id_name(&self) -> &str {
        &self.0.caller_id.name
    }
    #[getter]
    fn connected_line_num(&self) -> &str {
        &self.0.connected_line.number
    }
    #[getter]
    fn connected_line_name(&self) -> &str {
        &self.0.connected_line.name
    }
    #[getter]
    fn language(&self) -> &str {
        &self.0.language
    }
    #[getter]
    fn account_code(&self) -> &str {
        &self.0.account_code
    }
    #[getter]
    fn context(&self) -> &str {
        &self.0.context
    }
    #[getter]
    fn exten(&self) -> &str {
        &self.0.exten
    }
    #[getter]
    fn priority(&self) -> u32 {
        self.0.priority
    }
    /// The id of the bridge the channel is in, if any.
    #[getter]
    fn bridge(&self) -> Option<&str> {
        self.0.bridge.as_deref()
    }
    /// For a Local channel, the Uniqueid of its other half (`;1` and `;2`).
    #[getter]
    fn local_peer(&self) -> Option<&str> {
        self.0.local_peer.as_deref()
    }
    /// When the channel was created, in seconds since the epoch (for a channel found by a
    /// rebuild, the PBX's own duration counted back).
    #[getter]
    fn created_at(&self) -> f64 {
        self.0
            .created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
    /// Channel variables (empty unless `live_variables=True`).
    #[getter]
    fn variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in &self.0.variables {
            dict.set_item(name.as_str(), value.as_str())?;
        }
        Ok(dict)
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyChannel>()
            .is_ok_and(|o| *o.get().0 == *self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "<LiveChannel {} {} uniqueid={} linkedid={}{}>",
            self.0.name,
            self.0.state.description(),
            self.0.uniqueid,
            self.0.linkedid,
            self.0
                .bridge
                .as_ref()
                .map(|b| format!(" bridge={b}"))
                .unwrap_or_default()
        )
    }
}

/// One live bridge.
#[pyclass(module = "amiwire._core", name = "LiveBridge", frozen)]
pub struct PyBridge(Arc<Bridge>);

#[pymethods]
impl PyBridge {
    #[getter]
    fn id(&self) -> &str {
        &self.0.id
    }
    /// `BridgeType` (`basic`, `holding`, ...).
    #[getter]
    fn bridge_type(&self) -> &str {
        &self.0.kind
    }
    #[getter]
    fn technology(&self) -> &str {
        &self.0.technology
    }
    #[getter]
    fn creator(&self) -> &str {
        &self.0.creator
    }
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }
    #[getter]
    fn video_source_mode(&self) -> &str {
        &self.0.video_source_mode
    }
    /// Uniqueids of its channels, in the order they entered.
    #[getter]
    fn members(&self) -> Vec<&str> {
        self.0.members.iter().map(|m| m.as_str()).collect()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyBridge>()
            .is_ok_and(|o| *o.get().0 == *self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "<LiveBridge {} {} members={:?}>",
            self.0.id, self.0.kind, self.0.members
        )
    }
}

/// One call: the live channels that share a Linkedid.
#[pyclass(module = "amiwire._core", name = "LiveCall", frozen)]
pub struct PyCall(Arc<Call>);

#[pymethods]
impl PyCall {
    #[getter]
    fn linkedid(&self) -> &str {
        &self.0.linkedid
    }
    /// Uniqueids of its live channels, in the order they joined.
    #[getter]
    fn channels(&self) -> Vec<&str> {
        self.0.channels.iter().map(|c| c.as_str()).collect()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyCall>().is_ok_and(|o| *o.get().0 == *self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "<LiveCall {} channels={:?}>",
            self.0.linkedid, self.0.channels
        )
    }
}

enum Entries {
    Channels(Map<Channel>),
    Bridges(Map<Bridge>),
    Calls(Map<Call>),
}

/// A read-only mapping of one kind of entry, by Uniqueid, bridge id or Linkedid.
#[pyclass(module = "amiwire._core", name = "LiveMap", frozen, mapping)]
pub struct LiveMap(Entries);

impl LiveMap {
    fn lookup(&self, py: Python<'_>, key: &str) -> Option<Py<PyAny>> {
        let object = match &self.0 {
            Entries::Channels(map) => {
                Py::new(py, PyChannel(map.get(key)?.clone())).map(Py::into_any)
            }
            Entries::Bridges(map) => Py::new(py, PyBridge(map.get(key)?.clone())).map(Py::into_any),
            Entries::Calls(map) => Py::new(py, PyCall(map.get(key)?.clone())).map(Py::into_any),
        };
        object.ok()
    }

    fn keys_vec(&self) -> Vec<String> {
        match &self.0 {
            Entries::Channels(map) => map.keys().map(|k| k.to_string()).collect(),
            Entries::Bridges(map) => map.keys().map(|k| k.to_string()).collect(),
            Entries::Calls(map) => map.keys().map(|k| k.to_string()).collect(),
        }
    }
}

#[pymethods]
impl LiveMap {
    fn __len__(&self) -> usize {
        match &self.0 {
            Entries::Channels(map) => map.len(),
            Entries::Bridges(map) => map.len(),
            Entries::Calls(map) => map.len(),
        }
    }
    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        self.lookup(py, key)
            .ok_or_else(|| PyKeyError::new_err(key.to_owned()))
    }
    fn __contains__(&self, key: &str) -> bool {
        match &self.0 {
            Entries::Channels(map) => map.contains_key(key),
            Entries::Bridges(map) => map.contains_key(key),
            Entries::Calls(map) => map.contains_key(key),
        }
    }
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, self.keys_vec())?
            .try_iter()
            .map(Bound::into_any)
    }
    /// The entry under `key`, or `default`.
    #[pyo3(signature = (key, default=None))]
    fn get(&self, py: Python<'_>, key: &str, default: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        self.lookup(py, key).or(default)
    }
    fn keys(&self) -> Vec<String> {
        self.keys_vec()
    }
    fn values(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        self.keys_vec()
            .iter()
            .filter_map(|k| self.lookup(py, k))
            .collect()
    }
    fn items(&self, py: Python<'_>) -> Vec<(String, Py<PyAny>)> {
        self.keys_vec()
            .into_iter()
            .filter_map(|k| self.lookup(py, &k).map(|v| (k, v)))
            .collect()
    }
    fn __repr__(&self) -> String {
        let kind = match &self.0 {
            Entries::Channels(_) => "channels",
            Entries::Bridges(_) => "bridges",
            Entries::Calls(_) => "calls",
        };
        format!("<LiveMap of {} {kind}>", self.__len__())
    }
}

/// The live state at one moment: channels, bridges and calls consistent with each other.
#[pyclass(module = "amiwire._core", name = "LiveSnapshot", frozen)]
pub struct LiveSnapshot(pub(crate) View);

#[pymethods]
impl LiveSnapshot {
    /// Live channels by Uniqueid.
    #[getter]
    fn channels(&self) -> LiveMap {
        LiveMap(Entries::Channels(self.0.channels().clone()))
    }
    /// Live bridges by id.
    #[getter]
    fn bridges(&self) -> LiveMap {
        LiveMap(Entries::Bridges(self.0.bridges().clone()))
    }
    /// Calls by Linkedid.
    #[getter]
    fn calls(&self) -> LiveMap {
        LiveMap(Entries::Calls(self.0.calls().clone()))
    }
    /// Grows by one with every change set: two snapshots of one version are equal.
    #[getter]
    fn version(&self) -> u64 {
        self.0.version()
    }
    fn __repr__(&self) -> String {
        format!(
            "<LiveSnapshot v{}: {} channels, {} bridges, {} calls>",
            self.0.version(),
            self.0.channels().len(),
            self.0.bridges().len(),
            self.0.calls().len()
        )
    }
}

/// One change of the live state.
#[pyclass(module = "amiwire._core", name = "LiveChange", frozen)]
pub struct PyChange(Change);

const CHANNEL_FIELDS: &[(ChannelFields, &str)] = &[
    (ChannelFields::NAME, "name"),
    (ChannelFields::LINKEDID, "linkedid"),
    (ChannelFields::STATE, "state"),
    (ChannelFields::CALLER_ID, "caller_id"),
    (ChannelFields::CONNECTED_LINE, "connected_line"),
    (ChannelFields::LANGUAGE, "language"),
    (ChannelFields::ACCOUNT_CODE, "account_code"),
    (ChannelFields::DIALPLAN, "dialplan"),
    (ChannelFields::BRIDGE, "bridge"),
    (ChannelFields::LOCAL_PEER, "local_peer"),
    (ChannelFields::VARIABLES, "variables"),
];

const BRIDGE_FIELDS: &[(BridgeFields, &str)] = &[
    (BridgeFields::KIND, "bridge_type"),
    (BridgeFields::TECHNOLOGY, "technology"),
    (BridgeFields::CREATOR, "creator"),
    (BridgeFields::NAME, "name"),
    (BridgeFields::VIDEO_SOURCE_MODE, "video_source_mode"),
    (BridgeFields::MEMBERS, "members"),
];

impl PyChange {
    fn hangup_cause(&self) -> Option<&HangupCause> {
        match &self.0 {
            Change::ChannelRemoved { cause, .. } => cause.as_ref(),
            _ => None,
        }
    }
}

#[pymethods]
impl PyChange {
    /// `channel_added`, `channel_changed`, `channel_removed`, and the same for `bridge` and
    /// `call`.
    #[getter]
    fn kind(&self) -> &'static str {
        match &self.0 {
            Change::ChannelAdded(_) => "channel_added",
            Change::ChannelChanged { .. } => "channel_changed",
            Change::ChannelRemoved { .. } => "channel_removed",
            Change::BridgeAdded(_) => "bridge_added",
            Change::BridgeChanged { .. } => "bridge_changed",
            Change::BridgeRemoved(_) => "bridge_removed",
            Change::CallAdded(_) => "call_added",
            Change::CallChanged(_) => "call_changed",
            Change::CallRemoved(_) => "call_removed",
        }
    }
    /// The channel as of the change (as last seen, for a removal).
    #[getter]
    fn channel(&self) -> Option<PyChannel> {
        match &self.0 {
            Change::ChannelAdded(c)
            | Change::ChannelChanged { channel: c, .. }
            | Change::ChannelRemoved { channel: c, .. } => Some(PyChannel(c.clone())),
            _ => None,
        }
    }
    #[getter]
    fn bridge(&self) -> Option<PyBridge> {
        match &self.0 {
            Change::BridgeAdded(b)
            | Change::BridgeChanged { bridge: b, .. }
            | Change::BridgeRemoved(b) => Some(PyBridge(b.clone())),
            _ => None,
        }
    }
    #[getter]
    fn call(&self) -> Option<PyCall> {
        match &self.0 {
            Change::CallAdded(c) | Change::CallChanged(c) | Change::CallRemoved(c) => {
                Some(PyCall(c.clone()))
            }
            _ => None,
        }
    }
    /// What a `*_changed` changed (`state`, `bridge`, `dialplan`, `members`, ...); empty
    /// otherwise. A call's change is always of its channels.
    #[getter]
    fn fields(&self) -> Vec<&'static str> {
        match &self.0 {
            Change::ChannelChanged { fields, .. } => CHANNEL_FIELDS
                .iter()
                .filter(|(f, _)| fields.contains(*f))
                .map(|(_, name)| *name)
                .collect(),
            Change::BridgeChanged { fields, .. } => BRIDGE_FIELDS
                .iter()
                .filter(|(f, _)| fields.contains(*f))
                .map(|(_, name)| *name)
                .collect(),
            Change::CallChanged(_) => vec!["channels"],
            _ => Vec::new(),
        }
    }
    /// A removed channel's hangup cause (Q.850), `None` when it went during a gap.
    #[getter]
    fn cause(&self) -> Option<u16> {
        self.hangup_cause().map(|c| c.code)
    }
    /// The cause's text (`Cause-txt`), `None` when it went during a gap.
    #[getter]
    fn cause_text(&self) -> Option<&str> {
        self.hangup_cause().map(|c| c.text.as_str())
    }
    fn __repr__(&self) -> String {
        let subject = match &self.0 {
            Change::ChannelAdded(c)
            | Change::ChannelChanged { channel: c, .. }
            | Change::ChannelRemoved { channel: c, .. } => c.name.to_string(),
            Change::BridgeAdded(b)
            | Change::BridgeChanged { bridge: b, .. }
            | Change::BridgeRemoved(b) => b.id.to_string(),
            Change::CallAdded(c) | Change::CallChanged(c) | Change::CallRemoved(c) => {
                c.linkedid.to_string()
            }
        };
        let fields = self.fields();
        let fields = if fields.is_empty() {
            String::new()
        } else {
            format!(" {}", fields.join(","))
        };
        format!("<LiveChange {} {subject}{fields}>", self.kind())
    }
}

pub fn changes_to_py_list(py: Python<'_>, changes: Vec<Change>) -> Bound<'_, PyList> {
    let items = changes
        .into_iter()
        .filter_map(|c| Bound::new(py, PyChange(c)).ok());
    PyList::new(py, items).unwrap_or_else(|_| PyList::empty(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyChannel>()?;
    m.add_class::<PyBridge>()?;
    m.add_class::<PyCall>()?;
    m.add_class::<LiveMap>()?;
    m.add_class::<LiveSnapshot>()?;
    m.add_class::<PyChange>()
}

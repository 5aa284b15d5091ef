//! The only PyO3 code: the `amiwire._core` extension module.

pub mod client;
pub mod errors;
pub mod logging;
pub mod message;
pub mod parser;
pub mod runtime;
pub mod sim;

use pyo3::prelude::*;

#[pymodule(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::init(m.py())?;
    m.add_function(wrap_pyfunction!(logging::log_records_dropped, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(runtime::_shutdown, m)?)?;
    message::register(m)?;
    parser::register(m)?;
    client::register(m)?;
    sim::register(m)?;
    Ok(())
}

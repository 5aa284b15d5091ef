//! The only PyO3 code: the `amiwire._core` extension module.

pub mod client;
pub mod errors;
pub mod event_classes;
pub mod live;
pub mod logging;
mod loop_socket;
pub mod message;
pub mod parser;
pub mod runtime;
pub mod sim;
pub mod typed;

use pyo3::prelude::*;

/// Messages are allocated by the connection driver's thread and freed on the asyncio loop's
/// thread. glibc's malloc makes every such free take the allocating arena's lock, which the
/// driver holds while it allocates the next batch: under an event flood the two threads spent
/// a fifth of their time on that lock. mimalloc frees across threads without one; measured on
/// the firehose bench, the loop's CPU per event fell from about 1.16 us to 0.61 us. It is built
/// without transparent huge pages (else each thread's heap grows RSS in 2 MiB steps: 96 KB
/// per idle connection instead of 34 KB) and with the TLS model a dlopen'ed library needs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::init(m.py())?;
    m.add_function(wrap_pyfunction!(logging::log_records_dropped, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(runtime::_shutdown, m)?)?;
    message::register(m)?;
    parser::register(m)?;
    client::register(m)?;
    live::register(m)?;
    sim::register(m)?;
    typed::register(m)?;
    Ok(())
}

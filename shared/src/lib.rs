//! Euro-Office editing connector for SkyeCONNEX: the core every Lambda and the `skye` command
//! share. Handlers are plain `async fn`s over the dependencies in [`app::App`].

pub mod app;
pub mod config;
pub mod error;
pub mod handlers;
pub mod http;
pub mod ids;
pub mod keys;
pub mod library;
pub mod model;
pub mod protocol;
pub mod storage;
pub mod telemetry;
pub mod vault;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};

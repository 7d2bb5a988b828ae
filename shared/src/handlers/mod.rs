//! One module per endpoint. Each handler is a plain `async fn` over [`App`](crate::App) and the
//! request, so tests and every runtime (Lambda, `skye serve`) call the same code.

pub mod callback;
pub mod editor;
pub mod file;
pub mod health;
pub mod session;
mod staging;

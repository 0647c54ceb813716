//! tom-thumb: takes the frame of a video at a position and writes it to S3 as
//! a PNG — the task of the Container-on-Demand pattern.
//!
//! The flow, wired by `main.rs`: [`Config::from_env`] reads the environment
//! contract; [`frame::Ffmpeg::thumbnail`] takes the frame over HTTP with
//! input seeking while [`upload::resolve_credentials`] fetches
//! the task's credentials; [`upload::put_png`] writes the PNG in one
//! PutObject. Every failure is a [`ThumbError`] whose class decides the exit
//! code.

pub mod config;
pub mod error;
pub mod frame;
pub mod position;
pub mod upload;

pub use config::{Config, ConfigError, InputUrl, OutputObject};
pub use error::{exit, ThumbError};
pub use frame::{Ffmpeg, Frame, Thumbnail};
pub use position::Position;

//! What is linked into the application and runs at checkpoint: its settings, the
//! open-resource check, the stdio handover, the self-dump protocol (the process side and
//! its detached helper), and the points where `crac run` or `crac checkpoint` may take
//! an image.

pub(crate) mod config;
pub(crate) mod description;
pub(crate) mod fd_check;
pub(crate) mod helper;
pub(crate) mod ready;
pub(crate) mod request_server;
pub(crate) mod secret_env;
pub(crate) mod self_dump;
mod stdio;

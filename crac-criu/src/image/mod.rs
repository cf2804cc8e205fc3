//! The image: a directory CRIU writes through a private staging sibling, published by an
//! atomic rename with its manifest written last, and checked before any restore.

mod digest;
mod directory;
mod host;
pub(crate) mod key;
pub(crate) mod manifest;
mod ownership;
pub(crate) mod pack;
mod publish;
mod refusal;
mod restorability;
mod seal;
mod segments;
mod staging;
pub(crate) mod verified_pages;
mod withdraw;

pub(crate) use digest::is_page_data;
pub(crate) use directory::{
    Contents, check_target, published_since, sibling, validate, verify_pages,
};
pub(crate) use host::{cpu_flags, kernel_release, sha256};
pub(crate) use manifest::LOG;
pub(crate) use ownership::{check_ownership, check_segments_ownership};
pub(crate) use publish::publish;
pub use refusal::ImageRefusal;
pub(crate) use restorability::{check_ids_free, check_listeners_free};
pub(crate) use segments::collect_garbage as collect_segments;
pub(crate) use staging::{DESCRIPTION, create_staging, failed_log};
pub use verified_pages::VerifyPages;
pub(crate) use withdraw::{DirId, is_published, withdraw};

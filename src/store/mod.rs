//! Model storage: the registered models and data sets, the verified cache they are fetched
//! into, and Hugging Face Hub ids in the standard hub cache.

pub mod cache;
pub mod hub;
pub mod registry;

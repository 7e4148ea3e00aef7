//! A second, independent reading of the envelope rules, and generators of frames to hold the
//! server to it.

pub mod gen;
pub mod json;
pub mod rules;

//! Placeholder replaced by the tests of this file.
mod support;

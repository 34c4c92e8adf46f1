//! natter-conformance (work in progress).

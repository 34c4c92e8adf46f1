//! natter-client (work in progress).

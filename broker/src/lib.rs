//! natter-broker (work in progress).

//! natter-edge (work in progress).

//! Demo programs live in `examples/`.

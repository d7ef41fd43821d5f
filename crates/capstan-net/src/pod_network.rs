//! The pod network (being written).

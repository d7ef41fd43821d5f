//! The order of a merged list, as Kubernetes computes it.
//!
//! The elements named by the patch (its own list, or `$setElementOrder` when sent) keep the
//! patch's order; the elements only the server has keep their order among themselves. The two
//! runs are then interleaved: a server-only element goes before the first patch element that
//! comes after it in the server's list. A patch element the server does not know yet compares
//! as "not after", so new elements go *before* the server-only elements that follow them:
//! patching `[a, b]` with `[c]` gives `[c, a, b]` (the `kubectl patch` example of the
//! Kubernetes documentation shows the added container first, too). kubectl's `apply` sends
//! `$setElementOrder`, which pins the order.

use serde_json::Value;

use super::message::{GO_MAP, bad_arg_type, invalid, no_merge_key, order_mismatch};
use super::{DELETE, DIRECTIVE, PatchError, go_equal};

/// How list elements are told apart: by the value of their merge key (lists of objects), or
/// whole (lists of primitives, `merge_key == ""`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Identity<'k> {
    pub merge_key: &'k str,
    /// Whether the elements are objects; Kubernetes decides this from the elements
    /// themselves, not from the schema.
    pub objects: bool,
}

impl Identity<'_> {
    /// What an element is compared by; `None` stands for Go's `nil`, and equals itself.
    fn of<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        if self.objects {
            item.as_object().and_then(|m| m.get(self.merge_key))
        } else {
            Some(item)
        }
    }

    fn same(&self, a: &Value, b: &Value) -> bool {
        match (self.of(a), self.of(b)) {
            (Some(a), Some(b)) => go_equal(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    fn index(&self, list: &[Value], item: &Value) -> Option<usize> {
        list.iter().position(|v| self.same(item, v))
    }
}

/// Orders a merged list: `patch_items` (elements named by the patch) by `patch_order`,
/// `server_only` by `server_order`, then interleaves them (see the module comment).
pub(super) fn normalize(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    identity: Identity<'_>,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by(patch_items, patch_order, identity)?;
    let server_only = sort_by(server_only, server_order, identity)?;
    Ok(interleave(server_only, patch_items, server_order, identity))
}

/// Stable sort of `items` by their position in `order`. Elements missing from `order` (which
/// a valid patch never produces) go last; `$patch: delete` elements go after everything.
fn sort_by(
    items: Vec<Value>,
    order: &[Value],
    identity: Identity<'_>,
) -> Result<Vec<Value>, PatchError> {
    let (mut kept, deleted) = if identity.objects {
        require_merge_key(identity.merge_key, &items)?;
        require_merge_key(identity.merge_key, order)?;
        items
            .into_iter()
            .partition(|item| item.get(DIRECTIVE) != Some(&Value::from(DELETE)))
    } else {
        (items, Vec::new())
    };
    kept.sort_by_key(|item| identity.index(order, item).unwrap_or(usize::MAX));
    kept.extend(deleted);
    Ok(kept)
}

/// Inserts each server-only element (`left`) before the first patch element (`right`) that
/// comes after it in `server_order`; both runs keep their own order.
fn interleave(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    identity: Identity<'_>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    identity.index(server_order, l),
                    identity.index(server_order, r),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    // A new patch element: it goes first.
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Splits `merged` into the elements `by` names and the others, keeping their order.
pub(super) fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::with_capacity(merged.len());
    let mut others = Vec::new();
    for item in merged {
        let present = if merge_key.is_empty() {
            by.iter().any(|b| go_equal(b, &item))
        } else {
            find_by_key(by, merge_key, merge_key_of(&item, merge_key)?)?.is_some()
        };
        if present {
            named.push(item)
        } else {
            others.push(item)
        }
    }
    Ok((named, others))
}

/// The first element of `list` whose `merge_key` equals `key_value`; every element scanned
/// must be an object.
pub(super) fn find_by_key(
    list: &[Value],
    merge_key: &str,
    key_value: &Value,
) -> Result<Option<usize>, PatchError> {
    for (i, item) in list.iter().enumerate() {
        let map = item
            .as_object()
            .ok_or_else(|| invalid(format!("value for key {i} is not a map")))?;
        if map.get(merge_key).is_some_and(|v| go_equal(v, key_value)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn require_merge_key(merge_key: &str, items: &[Value]) -> Result<(), PatchError> {
    for item in items {
        let map = item.as_object().ok_or_else(|| bad_arg_type(GO_MAP, item))?;
        if !map.contains_key(merge_key) {
            return Err(no_merge_key(map, merge_key));
        }
    }
    Ok(())
}

/// Checks that a patch list is in the order its `$setElementOrder` list gives (which must
/// name every element of the patch list, deletions and directives aside).
pub(super) fn validate_patch_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let not_deleted: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        let mut kept = Vec::with_capacity(patch_list.len());
        for item in patch_list {
            let map = item.as_object().ok_or_else(|| bad_arg_type(GO_MAP, item))?;
            if map.get(DIRECTIVE) != Some(&Value::from(DELETE)) {
                kept.push(item);
            }
        }
        kept
    };
    let (mut p, mut o) = (0, 0);
    while p < not_deleted.len() && o < order.len() {
        if not_deleted[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if merge_key_equal(not_deleted[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < not_deleted.len() {
        return Err(order_mismatch(patch_list, order));
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(go_equal(left, right));
    }
    Ok(go_equal(
        merge_key_of(left, merge_key)?,
        merge_key_of(right, merge_key)?,
    ))
}

fn merge_key_of<'v>(item: &'v Value, merge_key: &str) -> Result<&'v Value, PatchError> {
    let map = item.as_object().ok_or_else(|| bad_arg_type(GO_MAP, item))?;
    map.get(merge_key)
        .ok_or_else(|| no_merge_key(map, merge_key))
}

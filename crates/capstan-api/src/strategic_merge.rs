//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in kinds, as
//! Kubernetes 1.33 applies it on the server (`strategicpatch.StrategicMergeMapPatch`).
//!
//! It is a JSON merge patch (objects merge key by key, `null` deletes a key) that knows the
//! schema: lists tagged `patchStrategy:"merge"` merge element by element on their merge key
//! (containers by `name`, container ports by `containerPort`, …) and lists of primitives so
//! tagged merge as sets (`finalizers`); every other list is replaced. The tags live in
//! [`schema`]. On top of that, the patch may carry directives, which kubectl's client-side
//! `apply` sends:
//! - `$patch: replace` / `$patch: delete` in an object replace or empty it; as an element of a
//!   merging list they replace the whole list or delete the element with that merge key;
//! - `$retainKeys: [..]` drops every key of the object that the list does not name;
//! - `$setElementOrder/<list>: [..]` gives the order of the merged list;
//! - `$deleteFromPrimitiveList/<list>: [..]` removes values from a list of primitives.
//!
//! Errors use Kubernetes' wording. Where Kubernetes would copy a patch value verbatim into the
//! object (a field the original lacks), the value is instead merged into nothing: its nulls
//! and directives are consumed the same way, so none leaks into the stored object.

mod message;
mod order;
pub(crate) mod schema;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use message::{
    BAD_JSON_DOC, BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST, BAD_PATCH_FORMAT_FOR_RETAIN_KEYS,
    BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST, GO_SLICE, MERGE_DIRECTIVE_IN_LIST,
    NO_LIST_OF_LISTS, bad_arg_type, bad_patch_type, invalid, mixed_element_types, no_merge_key,
};
use order::Identity;
use schema::{FieldMeta, Schema, Strategy};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// The patch is not a valid strategic merge patch for this object; a retry with the same
    /// body fails again.
    #[error("{0}")]
    Invalid(String),
}

const DIRECTIVE: &str = "$patch";
const REPLACE: &str = "replace";
const DELETE: &str = "delete";
/// Reserved by Kubernetes for lists, never implemented: refused wherever it appears.
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

type Object = Map<String, Value>;
/// The schema of a value; `None` for values with no tagged fields (maps, scalars, or types
/// not in the tables), where only the default rules apply.
type Type = Option<&'static Schema>;

/// How the elements of a list field combine, read from the same tags as the patch: shared with
/// server-side apply, which follows the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole.
    Atomic,
    /// A list of primitives merged as a set (`finalizers`).
    Set,
    /// Elements identified by the value of one key (`containers` by `name`).
    Map { key: &'static str },
}

/// A position in the type of an object, for walking an object alongside its list rules.
#[derive(Debug, Clone, Copy)]
pub struct TypeCursor(Type);

impl TypeCursor {
    /// The top of an object of `kind`.
    pub fn of_kind(kind: &str) -> Self {
        TypeCursor(Some(schema::for_kind(kind)))
    }

    /// The field `name` of a value at this position: how it combines if it is a list, and the
    /// position of its value (of its elements, for a list).
    pub fn field(self, name: &str) -> (ListType, TypeCursor) {
        let meta = schema::field(self.0, name);
        let list_type = match meta.merge_key() {
            Some("") => ListType::Set,
            Some(key) => ListType::Map { key },
            None => ListType::Atomic,
        };
        (list_type, TypeCursor(meta.schema))
    }
}

/// Applies `patch` to `original`, an object of `kind` (`Deployment`, `Pod`, …); `original` is
/// not modified.
///
/// Kinds the tables do not know get the rules every object shares (those of `metadata`).
/// Kubernetes refuses strategic merge patches of custom resources outright (415, "strategic
/// merge patch format is not supported"): that decision belongs to the caller, which knows
/// whether `kind` is built in.
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(invalid(BAD_JSON_DOC));
    };
    let original = match original {
        Value::Object(original) => original.clone(),
        Value::Null => Object::new(),
        _ => return Err(invalid(BAD_JSON_DOC)),
    };
    merge_object(original, patch, Some(schema::for_kind(kind))).map(Value::Object)
}

/// Merges `patch` into `original`, an object of type `ty` (Kubernetes' `mergeMap`).
fn merge_object(mut original: Object, patch: &Object, ty: Type) -> Result<Object, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some(REPLACE) => {
                let mut replacement = patch.clone();
                replacement.shift_remove(DIRECTIVE);
                merge_object(Object::new(), &replacement, ty)
            }
            // Kubernetes empties the object rather than removing it.
            Some(DELETE) => Ok(Object::new()),
            _ => Err(bad_patch_type(directive, patch)),
        };
    }

    // The directives that shape the whole object go first: `$retainKeys` must not drop what
    // the patch is about to add, and `$setElementOrder` merges its list itself.
    apply_retain_keys(&mut original, patch)?;
    let ordered = merge_ordered_lists(&mut original, patch, ty)?;

    for (key, value) in patch {
        if key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || ordered.contains(&key.as_str())
        {
            continue;
        }
        let (name, deletions) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (list_name(key, DELETE_FROM_PRIMITIVE_LIST)?, true)
        } else {
            (key.as_str(), false)
        };
        if value.is_null() {
            original.shift_remove(name);
            continue;
        }
        let meta = schema::field(ty, name);
        let Some(current) = original.get_mut(name) else {
            // Deleting from a list that is not there leaves it not there.
            if !deletions && let Some(created) = create(value, meta)? {
                original.insert(name.to_owned(), created);
            }
            continue;
        };
        match (current, value) {
            (Value::Object(current), Value::Object(patch))
                if !deletions && meta.strategy != Strategy::Replace =>
            {
                *current = merge_object(std::mem::take(current), patch, meta.schema)?;
            }
            // Kubernetes honours `$deleteFromPrimitiveList` whatever the list's strategy.
            (Value::Array(current), Value::Array(patch))
                if deletions || meta.merge_key().is_some() =>
            {
                *current = merge_list(std::mem::take(current), patch, meta, deletions)?.items;
            }
            _ if deletions => {}
            (current, _) => match create(value, meta)? {
                Some(created) => *current = created,
                None => {
                    original.shift_remove(name);
                }
            },
        }
    }
    Ok(original)
}

/// The value a patch value gives a field the original lacks (or holds with another JSON
/// type): the patch merged into nothing, so that nulls and directives inside it are
/// consumed. `None` when the field ends up absent (`$patch: delete`).
fn create(value: &Value, meta: FieldMeta) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(patch) => {
            if patch.get(DIRECTIVE).and_then(Value::as_str) == Some(DELETE) {
                return Ok(None);
            }
            Ok(Some(Value::Object(merge_object(
                Object::new(),
                patch,
                meta.schema,
            )?)))
        }
        Value::Array(items) => Ok(Some(Value::Array(create_list(items, meta)?))),
        other => Ok(Some(other.clone())),
    }
}

/// A list the original lacks, or that the patch replaces. Elements keep the patch's order and
/// its duplicates, as Kubernetes keeps them; elements that are only directives go (`delete`
/// has nothing to delete, and `replace` is what happens anyway).
fn create_list(items: &[Value], meta: FieldMeta) -> Result<Vec<Value>, PatchError> {
    let element = FieldMeta {
        strategy: Strategy::Default,
        schema: meta.schema,
    };
    let mut created = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(map) => match map.get(DIRECTIVE) {
                None => created.extend(create(item, element)?),
                Some(directive) => check_list_directive(directive, map)?,
            },
            other => created.push(other.clone()),
        }
    }
    Ok(created)
}

/// Accepts the `$patch` values a list element may carry (`delete`, `replace`).
fn check_list_directive(directive: &Value, element: &Object) -> Result<(), PatchError> {
    match directive.as_str() {
        Some(DELETE | REPLACE) => Ok(()),
        Some(MERGE) => Err(invalid(MERGE_DIRECTIVE_IN_LIST)),
        _ => Err(bad_patch_type(directive, element)),
    }
}

/// A merged list, and the original list as Kubernetes' `$setElementOrder` step sees it.
///
/// Kubernetes merges a list in the storage of the original one: deleting an element shifts
/// the later ones left (leaving a stale copy at the end) and appended elements fill the freed
/// slots. The `$setElementOrder` step then orders the result against that reused list, not
/// the list as it was. `original_as_seen` replays those moves so that the order matches
/// Kubernetes element for element (its own tests depend on it). Lists of primitives are not
/// replayed: there the reuse only shows when the original list holds duplicates.
struct MergedList {
    items: Vec<Value>,
    original_as_seen: Vec<Value>,
}

/// Merges a patch list into a list whose field merges (`meta` has a merge key), or removes
/// the patch's values from it (`deletions`, from `$deleteFromPrimitiveList`).
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    meta: FieldMeta,
    deletions: bool,
) -> Result<MergedList, PatchError> {
    let Some(kind) = element_kind(&[&original, patch])? else {
        return Ok(MergedList {
            original_as_seen: Vec::new(),
            items: original,
        });
    };
    let merge_key = meta.merge_key().unwrap_or("");

    if kind != ElementKind::Object {
        if deletions {
            let items = original
                .iter()
                .filter(|item| !patch.iter().any(|deleted| go_equal(item, deleted)))
                .cloned()
                .collect();
            return Ok(MergedList {
                items,
                original_as_seen: original,
            });
        }
        // A set union, ordered like any merged list.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(patch) {
            if !merged.iter().any(|m| go_equal(m, item)) {
                merged.push(item.clone());
            }
        }
        let (named, server_only) = order::partition(merged, patch, "")?;
        let identity = Identity {
            merge_key: "",
            objects: false,
        };
        let items = order::normalize(named, server_only, patch, &original, identity)?;
        return Ok(MergedList {
            items,
            original_as_seen: original,
        });
    }

    if merge_key.is_empty() {
        // Objects in a list of primitives (or in a deletion list of an unmerged list): the Go
        // type named is the element type of the field.
        let element_type = if meta.merge_key().is_some() {
            "string"
        } else {
            "struct"
        };
        return Err(invalid(format!(
            "cannot merge lists without merge key for {element_type}"
        )));
    }
    let mut storage = ReusedStorage::new(&original);
    let (original, patch) = apply_list_directives(original, patch, merge_key, meta, &mut storage)?;
    let server_order = original.clone();
    let merged = merge_elements(original, &patch, merge_key, meta, &mut storage)?;
    let (named, server_only) = order::partition(merged, &patch, merge_key)?;
    let identity = Identity {
        merge_key,
        objects: true,
    };
    let items = order::normalize(named, server_only, &patch, &server_order, identity)?;
    Ok(MergedList {
        items,
        original_as_seen: storage.slots,
    })
}

/// Replays what a merge does to the storage of the original list (see [`MergedList`]).
struct ReusedStorage {
    /// The original list's slots, as many as it had elements.
    slots: Vec<Value>,
    /// How many elements the list being merged has now.
    len: usize,
    /// Set once the list no longer lives in this storage (`$patch: replace`).
    abandoned: bool,
}

impl ReusedStorage {
    fn new(original: &[Value]) -> Self {
        ReusedStorage {
            slots: original.to_vec(),
            len: original.len(),
            abandoned: false,
        }
    }

    /// Go's `append(list[:index], list[index+1:]...)`: the slot past the new end keeps a
    /// stale copy of the last element.
    fn remove(&mut self, index: usize) {
        if !self.abandoned {
            for slot in index..self.len - 1 {
                self.slots[slot] = self.slots[slot + 1].clone();
            }
            self.len -= 1;
        }
    }

    /// Go's `append`: fills a freed slot; past the original length it is not seen.
    fn push(&mut self, item: &Value) {
        if !self.abandoned {
            if let Some(slot) = self.slots.get_mut(self.len) {
                *slot = item.clone();
            }
            self.len += 1;
        }
    }
}

/// Handles the elements of a patch list that are directives: `$patch: delete` removes every
/// element with that merge key, `$patch: replace` makes the rest of the patch list the whole
/// list. Returns the list to merge into and the patch elements left to merge.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    meta: FieldMeta,
    storage: &mut ReusedStorage,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(element) = item.as_object() else {
            continue;
        };
        let Some(directive) = element.get(DIRECTIVE) else {
            rest.push(item.clone());
            continue;
        };
        check_list_directive(directive, element)?;
        if directive.as_str() == Some(DELETE) {
            let key_value = element
                .get(merge_key)
                .ok_or_else(|| no_merge_key(element, merge_key))?;
            while let Some(i) = order::find_by_key(&original, merge_key, key_value)? {
                original.remove(i);
                storage.remove(i);
            }
        } else {
            // Keep going: later elements may still be directives to check.
            replace = true;
        }
    }
    if replace {
        storage.abandoned = true;
        return Ok((create_list(&rest, meta)?, Vec::new()));
    }
    Ok((original, rest))
}

/// Merges each patch element into the first element with the same merge key, or appends it.
fn merge_elements(
    mut merged: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    meta: FieldMeta,
    storage: &mut ReusedStorage,
) -> Result<Vec<Value>, PatchError> {
    let element = FieldMeta {
        strategy: Strategy::Default,
        schema: meta.schema,
    };
    for item in patch {
        let Some(patch_element) = item.as_object() else {
            continue;
        };
        let key_value = patch_element
            .get(merge_key)
            .ok_or_else(|| no_merge_key(patch_element, merge_key))?;
        match order::find_by_key(&merged, merge_key, key_value)? {
            Some(i) => {
                if let Value::Object(current) = &mut merged[i] {
                    *current = merge_object(std::mem::take(current), patch_element, meta.schema)?;
                }
            }
            None => {
                storage.push(item);
                merged.extend(create(item, element)?);
            }
        }
    }
    Ok(merged)
}

/// Applies `$retainKeys`: every key of `original` the list does not name is dropped, and the
/// patch may only set keys the list names.
fn apply_retain_keys(original: &mut Object, patch: &Object) -> Result<(), PatchError> {
    let Some(retained) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retained) = retained else {
        return Err(invalid(BAD_PATCH_FORMAT_FOR_RETAIN_KEYS));
    };
    let is_retained = |key: &str| retained.iter().any(|r| r.as_str() == Some(key));
    let sets_unretained_key = patch.iter().any(|(key, value)| {
        !value.is_null()
            && key != RETAIN_KEYS
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !is_retained(key)
    });
    if sets_unretained_key {
        return Err(invalid(BAD_PATCH_FORMAT_FOR_RETAIN_KEYS));
    }
    original.retain(|key, _| is_retained(key));
    Ok(())
}

/// Applies each `$setElementOrder/<list>` directive: merges `<list>` from the patch, then
/// orders the result like the directive's list. Returns the lists it merged, which the rest
/// of the patch must not merge again.
fn merge_ordered_lists<'p>(
    original: &mut Object,
    patch: &'p Object,
    ty: Type,
) -> Result<Vec<&'p str>, PatchError> {
    let mut merged_lists = Vec::new();
    for (key, order) in patch {
        if !key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        let Value::Array(order) = order else {
            return Err(bad_arg_type(GO_SLICE, order));
        };
        let name = list_name(key, SET_ELEMENT_ORDER)?;
        let current = list_field(original, name)?.map(<[Value]>::to_vec);
        let patch_list = list_field(patch, name)?;
        let meta = schema::field(ty, name);
        let merge_key = meta.merge_key().unwrap_or("");
        order::validate_patch_order(patch_list.unwrap_or_default(), order, merge_key)?;

        let (merged, original_as_seen) = match (current, patch_list) {
            (None, None) => continue,
            (Some(current), None) => (current.clone(), current),
            (None, Some(patch_list)) => (create_list(patch_list, meta)?, Vec::new()),
            (Some(current), Some(patch_list)) if meta.merge_key().is_some() => {
                let merged = merge_list(current, patch_list, meta, false)?;
                (merged.items, merged.original_as_seen)
            }
            (Some(current), Some(patch_list)) => (create_list(patch_list, meta)?, current),
        };
        let ordered = match element_kind(&[&original_as_seen, patch_list.unwrap_or_default()])? {
            // Nothing to order.
            None => merged,
            Some(kind) => {
                let (named, server_only) = order::partition(merged, order, merge_key)?;
                let identity = Identity {
                    merge_key,
                    objects: kind == ElementKind::Object,
                };
                order::normalize(named, server_only, order, &original_as_seen, identity)?
            }
        };
        original.insert(name.to_owned(), Value::Array(ordered));
        merged_lists.push(name);
    }
    Ok(merged_lists)
}

/// The list in `object[name]`, if any; a value of another type there is an error.
fn list_field<'o>(object: &'o Object, name: &str) -> Result<Option<&'o [Value]>, PatchError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list)),
        Some(other) => Err(bad_arg_type(GO_SLICE, other)),
    }
}

/// The list a parallel-list directive key (`$setElementOrder/containers`) is about.
fn list_name<'k>(key: &'k str, prefix: &str) -> Result<&'k str, PatchError> {
    match key.split_once('/') {
        Some((head, name)) if head == prefix => Ok(name),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => {
            Err(invalid(BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST))
        }
        _ => Err(invalid(BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)),
    }
}

/// The JSON type of list elements; lists must not mix them (Go compares the decoded types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The element type shared by all `lists`, `None` when they are all empty.
fn element_kind(lists: &[&[Value]]) -> Result<Option<ElementKind>, PatchError> {
    let mut kind = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let this = match item {
            Value::Null => ElementKind::Null,
            Value::Bool(_) => ElementKind::Bool,
            Value::Number(_) => ElementKind::Number,
            Value::String(_) => ElementKind::String,
            Value::Object(_) => ElementKind::Object,
            // Go only looks for nested lists in the first element; a later one is a mismatch.
            Value::Array(_) if kind.is_none() => return Err(invalid(NO_LIST_OF_LISTS)),
            Value::Array(_) => return Err(mixed_element_types(lists)),
        };
        match kind {
            None => kind = Some(this),
            Some(previous) if previous != this => return Err(mixed_element_types(lists)),
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// Equality of decoded JSON values as Go's `==` sees them, except that numbers compare by
/// value whatever their representation (`80` and `80.0` name the same port).
fn go_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            x.as_f64() == y.as_f64()
        }
        _ => a == b,
    }
}

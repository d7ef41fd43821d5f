//! capstan's scheduler, in kube-scheduler's shape: pods waiting for a node go through a
//! priority queue, are checked against a snapshot of the nodes by filter plugins, ranked by
//! score plugins, and bound through the `pods/binding` subresource.

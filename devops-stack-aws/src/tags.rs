//! Ownership tags: every AWS resource the crate creates carries the stack's and the module's
//! names, and nothing without both is ever updated or deleted.

use std::collections::BTreeMap;

/// The tag naming the stack that created a resource.
pub const STACK_TAG: &str = "devops-stack.io/stack";

/// The tag naming the module that created a resource.
pub const MODULE_TAG: &str = "devops-stack.io/module";

/// The tag naming which part of a module a resource is (`vpc`, `subnet/private/us-east-1a`):
/// how a re-run finds what an earlier, interrupted run created.
pub const PART_TAG: &str = "devops-stack.io/part";

/// The prefix of the tags an EKS Pod Identity role carries, one per cluster whose pod identity
/// association uses it (`devops-stack.io/pod-identity/<region>/<cluster>`, the value
/// `<region>/<cluster>`): the role goes when the last of them does.
pub const POD_IDENTITY_USE_TAG_PREFIX: &str = "devops-stack.io/pod-identity/";

/// The ownership tags of `module` of `stack`.
pub(crate) fn ownership(stack: &str, module: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (STACK_TAG.to_owned(), stack.to_owned()),
        (MODULE_TAG.to_owned(), module.to_owned()),
    ])
}

/// Whether `tags` say the resource belongs to `module` of `stack`.
pub(crate) fn owned_by<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    stack: &str,
    module: &str,
) -> bool {
    let (mut s, mut m) = (false, false);
    for (k, v) in tags {
        s |= k == STACK_TAG && v == stack;
        m |= k == MODULE_TAG && v == module;
    }
    s && m
}

/// The devops-stack tags among `tags`, as `key=value, ...`, or `none`: who owns a resource,
/// for errors and progress messages.
pub(crate) fn owner_text<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let owner: Vec<String> = tags
        .into_iter()
        .filter(|(k, _)| k.starts_with("devops-stack.io/"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if owner.is_empty() {
        "none".into()
    } else {
        owner.join(", ")
    }
}

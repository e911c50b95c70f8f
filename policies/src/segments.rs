//! Rules with `+` segments, indexed as a trie over path segments so that a lookup
//! costs the depth of the path, not the number of rules (Vault scans them all and
//! sorts the matches).
//!
//! Each node has literal children (sorted, binary-searched), at most one `+` child,
//! the rule that ends exactly there, and the trailing-`*` rules whose last, partial
//! segment is matched there. A lookup walks the path's segments down both the literal
//! and the `+` branch, and keeps the highest-priority rule it meets.
//!
//! Matching is Vault's: a non-`*` pattern needs exactly as many segments as it has
//! parts; a `*` pattern needs at least as many, its last part being a prefix of the
//! path's segment there. A `+` part matches any one segment, even an empty one.

use crate::pattern::{Priority, Ranked};

/// The `+` rules of an ACL.
#[derive(Debug, Clone)]
pub(crate) struct SegmentTree {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// `(segment, child)`, sorted by segment.
    literal: Vec<(Box<str>, usize)>,
    plus: Option<usize>,
    /// The pattern without `*` whose parts end here.
    whole: Option<Ranked>,
    /// `(last part, rule)` for `*` patterns whose other parts lead here, longest part
    /// first: among them, the longest matching one has the highest priority.
    partial: Vec<(Box<str>, Ranked)>,
}

impl Default for SegmentTree {
    fn default() -> Self {
        SegmentTree {
            nodes: vec![Node::default()],
        }
    }
}

impl SegmentTree {
    /// Index `pattern` (a segment-wildcard pattern, each pattern once) for `rule`.
    pub(crate) fn insert(&mut self, pattern: &str, rule: usize) {
        let ranked = Ranked {
            rule,
            priority: Priority::of_segment(pattern),
        };
        let (body, is_prefix) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        let mut parts: Vec<&str> = body.split('/').collect();
        let last = if is_prefix { parts.pop() } else { None };
        let node = parts.iter().fold(0, |node, part| self.child(node, part));
        match last {
            None => self.nodes[node].whole = Some(ranked),
            Some(last) => {
                let partial = &mut self.nodes[node].partial;
                partial.push((last.into(), ranked));
                partial.sort_by_key(|(part, _)| std::cmp::Reverse(part.len()));
            }
        }
    }

    /// The child of `node` for `part`, created if missing.
    fn child(&mut self, node: usize, part: &str) -> usize {
        if part == "+" {
            if let Some(plus) = self.nodes[node].plus {
                return plus;
            }
            let plus = self.push();
            self.nodes[node].plus = Some(plus);
            return plus;
        }
        match self.nodes[node]
            .literal
            .binary_search_by(|(segment, _)| (**segment).cmp(part))
        {
            Ok(i) => self.nodes[node].literal[i].1,
            Err(i) => {
                let child = self.push();
                self.nodes[node].literal.insert(i, (part.into(), child));
                child
            }
        }
    }

    fn push(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// The highest-priority rule matching `path`, if any.
    pub(crate) fn best_match(&self, path: &str) -> Option<&Ranked> {
        let mut best = None;
        if self.nodes.len() > 1 {
            self.visit(0, Some(path), &mut best);
        }
        best
    }

    /// `remaining` is what is left of the path: `None` once every segment is consumed
    /// (`Some("")` is one more, empty, segment).
    fn visit<'t>(&'t self, node: usize, remaining: Option<&str>, best: &mut Option<&'t Ranked>) {
        let node = &self.nodes[node];
        let Some(rest) = remaining else {
            *best = Ranked::best(*best, node.whole.as_ref());
            return;
        };
        let (segment, after) = match rest.split_once('/') {
            Some((segment, after)) => (segment, Some(after)),
            None => (rest, None),
        };
        let partial = node
            .partial
            .iter()
            .find(|(part, _)| &**part == "+" || segment.starts_with(&**part));
        *best = Ranked::best(*best, partial.map(|(_, ranked)| ranked));
        if let Ok(i) = node
            .literal
            .binary_search_by(|(literal, _)| (**literal).cmp(segment))
        {
            self.visit(node.literal[i].1, after, best);
        }
        if let Some(plus) = node.plus {
            self.visit(plus, after, best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        let mut tree = SegmentTree::default();
        tree.insert(pattern, 7);
        tree.best_match(path).map(|r| r.rule) == Some(7)
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/c/d", false),
            ("a/+/c", "a/b", false),
            ("a/+/c", "a//c", true),
            ("a/+/c", "a/b/x", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/", false),
            ("+", "anything", true),
            ("+", "", true),
            ("+", "a/b", false),
            ("a/+/c*", "a/b/cde/f", true),
            ("a/+/c*", "a/b/c", true),
            ("a/+/c*", "a/b/xc", false),
            ("a/+/c*", "a/b", false),
            ("a/+/*", "a/b/c/d", true),
            ("a/+/*", "a/b/", true),
            ("a/+/*", "a/b", false),
            ("x/+/c", "a/b/c", false),
            ("+/+", "a/b", true),
            ("+/+", "a", false),
            // `/+b` makes Vault index this as a segment rule; `+b` is still literal.
            ("a/+b*", "a/+bc/d", true),
            ("a/+b*", "a/xbc", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(matches(pattern, path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn picks_the_highest_priority_match() {
        let patterns = [
            "foo/+",         // 0
            "foo/+/bar",     // 1
            "foo/+/ba*",     // 2
            "foo/+/q",       // 3
            "+/+/bar",       // 4
            "foo/+/b*",      // 5
            "foo/bar/+",     // 6
            "foo/bar/+/baz", // 7
        ];
        let mut tree = SegmentTree::default();
        for (rule, pattern) in patterns.iter().enumerate() {
            tree.insert(pattern, rule);
        }
        let cases = [
            ("foo/x", Some(0)),
            ("foo/x/bar", Some(1)),
            ("foo/x/bart", Some(2)),
            ("foo/x/bq", Some(5)),
            ("foo/x/q", Some(3)),
            ("foo/bar/q", Some(6)),
            ("foo/bar/q/baz", Some(7)),
            ("zzz/x/bar", Some(4)),
            ("zzz/x", None),
        ];
        for (path, expected) in cases {
            assert_eq!(tree.best_match(path).map(|r| r.rule), expected, "{path}");
        }
    }
}

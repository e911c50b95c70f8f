//! A compressed radix tree over bytes, answering one question fast: which stored key
//! is the longest prefix of this path? That is how prefix (`foo/*`) rules are found,
//! as Vault does with `go-radix`'s `LongestPrefix`.
//!
//! Nodes live in one `Vec`; each edge carries a byte string, and a node's children are
//! kept sorted by the first byte of their edge, so a lookup walks at most one edge per
//! distinct branching point and never allocates.

/// Longest-prefix map from byte strings to `T`.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTree<T> {
    nodes: Vec<Node<T>>,
}

#[derive(Debug, Clone)]
struct Node<T> {
    /// The bytes on the edge from the parent (empty for the root).
    edge: Box<[u8]>,
    value: Option<T>,
    /// `(first byte of the child's edge, child index)`, sorted by byte.
    children: Vec<(u8, usize)>,
}

impl<T> Node<T> {
    fn new(edge: &[u8], value: Option<T>) -> Node<T> {
        Node {
            edge: edge.into(),
            value,
            children: Vec::new(),
        }
    }

    fn child(&self, byte: u8) -> Result<usize, usize> {
        self.children.binary_search_by_key(&byte, |(b, _)| *b)
    }
}

impl<T> Default for PrefixTree<T> {
    fn default() -> Self {
        PrefixTree {
            nodes: vec![Node::new(&[], None)],
        }
    }
}

impl<T> PrefixTree<T> {
    /// Store `value` under `key`, replacing what was there.
    pub(crate) fn insert(&mut self, key: &str, value: T) {
        let mut node = 0;
        let mut rest = key.as_bytes();
        loop {
            let Some(&first) = rest.first() else {
                self.nodes[node].value = Some(value);
                return;
            };
            let slot = match self.nodes[node].child(first) {
                Ok(slot) => slot,
                Err(slot) => {
                    let leaf = self.nodes.len();
                    self.nodes.push(Node::new(rest, Some(value)));
                    self.nodes[node].children.insert(slot, (first, leaf));
                    return;
                }
            };
            let child = self.nodes[node].children[slot].1;
            let common = common_prefix_len(&self.nodes[child].edge, rest);
            if common < self.nodes[child].edge.len() {
                // Split the child's edge: node -> middle (shared bytes) -> child (rest).
                let middle = self.nodes.len();
                let shared = self.nodes[child].edge[..common].to_vec();
                let tail: Box<[u8]> = self.nodes[child].edge[common..].into();
                let mut mid_node = Node::new(&shared, None);
                mid_node.children.push((tail[0], child));
                self.nodes[child].edge = tail;
                self.nodes.push(mid_node);
                self.nodes[node].children[slot].1 = middle;
                node = middle;
            } else {
                node = child;
            }
            rest = &rest[common..];
        }
    }

    /// The value stored under the longest key that is a prefix of `path`.
    pub(crate) fn longest_prefix(&self, path: &str) -> Option<&T> {
        let mut node = &self.nodes[0];
        let mut best = node.value.as_ref();
        let mut rest = path.as_bytes();
        while let Some(&first) = rest.first() {
            let Ok(slot) = node.child(first) else { break };
            let child = &self.nodes[node.children[slot].1];
            let Some(after) = rest.strip_prefix(&*child.edge) else {
                break;
            };
            node = child;
            rest = after;
            if node.value.is_some() {
                best = node.value.as_ref();
            }
        }
        best
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious implementation, to check the tree against.
    fn naive<'a>(keys: &'a [&'a str], path: &str) -> Option<&'a str> {
        keys.iter()
            .copied()
            .filter(|k| path.starts_with(k))
            .max_by_key(|k| k.len())
    }

    #[test]
    fn longest_prefix_agrees_with_a_scan() {
        let keys = [
            "secret/",
            "secret/data/",
            "secret/data/app",
            "secret/dat",
            "sys/",
            "sys/policies/acl/",
            "s",
            "transit/keys/",
            "transit/encrypt/",
        ];
        let mut tree = PrefixTree::default();
        for key in keys {
            tree.insert(key, key);
        }
        let paths = [
            "",
            "s",
            "se",
            "secret",
            "secret/",
            "secret/foo",
            "secret/dat",
            "secret/data",
            "secret/data/",
            "secret/data/ap",
            "secret/data/app",
            "secret/data/apple",
            "sys/policies/acl/x",
            "sys/policies/ac",
            "transit/keys/a",
            "transit/k",
            "zzz",
        ];
        for path in paths {
            assert_eq!(
                tree.longest_prefix(path).copied(),
                naive(&keys, path),
                "{path}"
            );
        }
    }

    #[test]
    fn empty_key_matches_everything_and_reinsert_replaces() {
        let mut tree = PrefixTree::default();
        assert_eq!(tree.longest_prefix("a"), None);
        tree.insert("", 1);
        tree.insert("ab", 2);
        assert_eq!(tree.longest_prefix("x"), Some(&1));
        assert_eq!(tree.longest_prefix("abc"), Some(&2));
        tree.insert("ab", 3);
        assert_eq!(tree.longest_prefix("abc"), Some(&3));
    }
}

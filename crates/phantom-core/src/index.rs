//! The order of the shared zone's former index (nginx's red-black tree), and the searches
//! over it: kept as the baseline of the `table` benchmark. The zone's index is now
//! [`crate::zone_index`].
//!
//! The zone kept entries in nginx's red-black tree. Its integer key holds the first 8
//! bytes of the digest (big-endian, so integer order is byte order); entries with equal keys
//! are ordered by the whole 32-byte digest. Insert and find both descend by [`order`], so
//! rotations (which keep the in-order sequence) can never hide an entry from a search.

use core::cmp::Ordering;

/// The tree key of a digest: its first 8 bytes, big-endian.
pub fn tree_key(digest: &[u8; 32]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(k)
}

/// The one total order of the index: by key, then by the full digest.
pub fn order(key_a: u64, a: &[u8; 32], key_b: u64, b: &[u8; 32]) -> Ordering {
    key_a.cmp(&key_b).then_with(|| a.cmp(b))
}

/// A binary search tree as the index sees it: nodes by handle, a nil handle for leaves.
pub trait Tree {
    /// A node handle (the module uses a pointer into the shared zone).
    type Node: Copy;
    /// Whether `n` is the nil leaf (nginx's sentinel), below which a search stops.
    fn is_nil(&self, n: Self::Node) -> bool;
    /// The left child of `n`.
    fn left(&self, n: Self::Node) -> Self::Node;
    /// The right child of `n`.
    fn right(&self, n: Self::Node) -> Self::Node;
    /// The tree key of `n` ([`tree_key`] of its digest).
    fn key(&self, n: Self::Node) -> u64;
    /// The full digest stored in `n`.
    fn digest(&self, n: Self::Node) -> &[u8; 32];
}

/// The node holding `digest`, searching from `root`.
pub fn find<T: Tree>(t: &T, root: T::Node, digest: &[u8; 32]) -> Option<T::Node> {
    let key = tree_key(digest);
    let mut n = root;
    while !t.is_nil(n) {
        n = match order(key, digest, t.key(n), t.digest(n)) {
            Ordering::Less => t.left(n),
            Ordering::Greater => t.right(n),
            Ordering::Equal => return Some(n),
        };
    }
    None
}

/// Where a new node with `digest` is attached below `root` (not nil): the parent, and
/// whether it becomes the left child.
pub fn attach_point<T: Tree>(t: &T, root: T::Node, digest: &[u8; 32]) -> (T::Node, bool) {
    let key = tree_key(digest);
    let mut parent = root;
    loop {
        let left = order(key, digest, t.key(parent), t.digest(parent)) == Ordering::Less;
        let next = if left {
            t.left(parent)
        } else {
            t.right(parent)
        };
        if t.is_nil(next) {
            return (parent, left);
        }
        parent = next;
    }
}

/// The first node in order after `after` (the smallest node, with `None`): a walk that
/// resumes by digest, so entries may be removed between its steps.
pub fn first_after<T: Tree>(t: &T, root: T::Node, after: Option<&[u8; 32]>) -> Option<T::Node> {
    let mut best = None;
    let mut n = root;
    while !t.is_nil(n) {
        let later =
            after.is_none_or(|d| order(t.key(n), t.digest(n), tree_key(d), d) == Ordering::Greater);
        if later {
            best = Some(n);
            n = t.left(n);
        } else {
            n = t.right(n);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arena tree; index 0 is nil.
    struct Arena {
        nodes: Vec<(usize, usize, [u8; 32])>,
    }

    impl Tree for Arena {
        type Node = usize;
        fn is_nil(&self, n: usize) -> bool {
            n == 0
        }
        fn left(&self, n: usize) -> usize {
            self.nodes[n].0
        }
        fn right(&self, n: usize) -> usize {
            self.nodes[n].1
        }
        fn key(&self, n: usize) -> u64 {
            tree_key(&self.nodes[n].2)
        }
        fn digest(&self, n: usize) -> &[u8; 32] {
            &self.nodes[n].2
        }
    }

    impl Arena {
        fn insert(&mut self, root: &mut usize, d: [u8; 32]) {
            self.nodes.push((0, 0, d));
            let id = self.nodes.len() - 1;
            if *root == 0 {
                *root = id;
                return;
            }
            let (p, left) = attach_point(self, *root, &d);
            if left {
                self.nodes[p].0 = id;
            } else {
                self.nodes[p].1 = id;
            }
        }

        /// A right rotation at `n` (what rebalancing does), returning the new subtree root.
        fn rotate_right(&mut self, n: usize) -> usize {
            let l = self.nodes[n].0;
            self.nodes[n].0 = self.nodes[l].1;
            self.nodes[l].1 = n;
            l
        }
    }

    /// Digests that share their first 8 bytes (the tree key) and differ after.
    fn crafted(tail: u8) -> [u8; 32] {
        let mut d = [0x42u8; 32];
        d[31] = tail;
        d
    }

    #[test]
    fn equal_keys_stay_findable_after_rotations() {
        let mut a = Arena {
            nodes: vec![(0, 0, [0; 32])],
        };
        let mut root = 0;
        for tail in [5u8, 3, 8, 1, 4, 7, 9] {
            a.insert(&mut root, crafted(tail));
        }
        assert_eq!(a.key(1), a.key(2), "the crafted digests share the tree key");
        root = a.rotate_right(root);
        for tail in [5u8, 3, 8, 1, 4, 7, 9] {
            let n = find(&a, root, &crafted(tail)).expect("found");
            assert_eq!(a.digest(n), &crafted(tail));
        }
        assert!(find(&a, root, &crafted(6)).is_none());
    }

    #[test]
    fn a_walk_by_first_after_visits_every_node_in_order() {
        let mut a = Arena {
            nodes: vec![(0, 0, [0; 32])],
        };
        let mut root = 0;
        let tails = [5u8, 3, 8, 1, 4, 7, 9];
        for tail in tails {
            a.insert(&mut root, crafted(tail));
        }
        let mut other = [0u8; 32];
        other[0] = 1;
        a.insert(&mut root, other);
        root = a.rotate_right(root);
        let mut seen = Vec::new();
        let mut after: Option<[u8; 32]> = None;
        while let Some(n) = first_after(&a, root, after.as_ref()) {
            seen.push(*a.digest(n));
            after = Some(*a.digest(n));
        }
        let mut want: Vec<[u8; 32]> = tails.iter().map(|t| crafted(*t)).collect();
        want.push(other);
        want.sort_by(|x, y| order(tree_key(x), x, tree_key(y), y));
        assert_eq!(seen, want);
        assert!(first_after(&a, 0, None).is_none(), "an empty tree");
    }

    #[test]
    fn key_order_is_byte_order() {
        let mut lo = [0u8; 32];
        let mut hi = [0u8; 32];
        lo[7] = 0xff;
        hi[0] = 1;
        assert!(tree_key(&lo) < tree_key(&hi));
        assert_eq!(order(tree_key(&lo), &lo, tree_key(&hi), &hi), lo.cmp(&hi));
    }
}

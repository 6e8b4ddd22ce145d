//! The zone's rbtree glue: nginx's tree, ordered and searched by `phantom_core::index`.

use nginx_sys::ngx_rbtree_node_t;
use phantom_core::index;

use super::Node;

pub(crate) fn tree_key(digest: &[u8; 32]) -> usize {
    index::tree_key(digest) as usize
}

/// The index as `phantom_core::index` searches it: nodes by pointer, nil = the sentinel.
pub(crate) struct Index {
    pub(crate) sentinel: *mut ngx_rbtree_node_t,
}

impl index::Tree for Index {
    type Node = *mut ngx_rbtree_node_t;
    fn is_nil(&self, n: Self::Node) -> bool {
        n == self.sentinel
    }
    fn left(&self, n: Self::Node) -> Self::Node {
        // SAFETY: n is a live node of the locked tree (never the sentinel here).
        unsafe { (*n).left }
    }
    fn right(&self, n: Self::Node) -> Self::Node {
        // SAFETY: as above.
        unsafe { (*n).right }
    }
    fn key(&self, n: Self::Node) -> u64 {
        // SAFETY: as above.
        unsafe { (*n).key as u64 }
    }
    fn digest(&self, n: Self::Node) -> &[u8; 32] {
        // SAFETY: every node of the tree is the first field of a Node.
        unsafe { &(*(n as *const Node)).digest }
    }
}

/// The tree's insert callback: places `node` below `root` by the index's one total order
/// (key, then full digest), the order `Locked::find` searches by.
pub(crate) unsafe extern "C" fn insert_node(
    root: *mut ngx_rbtree_node_t,
    node: *mut ngx_rbtree_node_t,
    sentinel: *mut ngx_rbtree_node_t,
) {
    let idx = Index { sentinel };
    // SAFETY: node is the first field of a Node being inserted under the zone lock.
    let digest = unsafe { &(*(node as *const Node)).digest };
    let (parent, left) = index::attach_point(&idx, root, digest);
    // SAFETY: parent is a live node whose chosen child is the sentinel; nginx's rbtree
    // contract: link the node as a red leaf.
    unsafe {
        if left {
            (*parent).left = node;
        } else {
            (*parent).right = node;
        }
        (*node).parent = parent;
        (*node).left = sentinel;
        (*node).right = sentinel;
        (*node).color = 1;
    }
}

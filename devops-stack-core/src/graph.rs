//! The dependency graph: edges from handles, ordering and phases; validation with petgraph.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Error, Result};
use crate::step::Phase;

/// Why one module runs after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    /// It reads the other's output.
    Data,
    /// The user ordered them with [`Stack::order`](crate::Stack::order).
    Order,
    /// A final-phase module runs after the rest.
    Phase,
}

/// The validated graph, with adjacency lists for the executor (indices are stack order).
#[derive(Debug)]
pub(crate) struct Graph {
    /// Predecessors of each node, all edge kinds.
    pub(crate) preds: Vec<Vec<usize>>,
    /// Successors of each node, all edge kinds.
    pub(crate) succs: Vec<Vec<usize>>,
    /// The data dependencies of each node, sorted (what its context may read).
    pub(crate) declared: Vec<Arc<[usize]>>,
    /// Every edge `(from, to, kind)`, deduplicated and sorted by `to`, for plans and DOT.
    pub(crate) edges: Vec<(usize, usize, EdgeKind)>,
    /// A deterministic topological order: stack order wherever the edges allow it.
    pub(crate) topo: Vec<usize>,
}

impl Graph {
    /// Builds the graph from data edges (`data[i]` are the nodes `i` reads), ordering edges and
    /// phases; fails with the modules of every cycle.
    pub(crate) fn build(
        names: &[Arc<str>],
        phases: &[Phase],
        data: &[Vec<usize>],
        order: &[(usize, usize)],
    ) -> Result<Graph> {
        let n = names.len();
        let mut edges: Vec<(usize, usize, EdgeKind)> = Vec::new();
        for (to, froms) in data.iter().enumerate() {
            edges.extend(froms.iter().map(|&from| (from, to, EdgeKind::Data)));
        }
        edges.extend(order.iter().map(|&(a, b)| (a, b, EdgeKind::Order)));

        // Final-phase modules run after every other module: an edge from each non-final module
        // that no other non-final module follows implies the rest.
        let finals: Vec<usize> = (0..n).filter(|&i| phases[i] == Phase::Final).collect();
        if !finals.is_empty() {
            let mut has_nonfinal_succ = vec![false; n];
            for &(a, b, _) in &edges {
                if phases[b] != Phase::Final {
                    has_nonfinal_succ[a] = true;
                }
            }
            for &f in &finals {
                for i in 0..n {
                    if phases[i] != Phase::Final && !has_nonfinal_succ[i] {
                        edges.push((i, f, EdgeKind::Phase));
                    }
                }
            }
        }
        edges.sort_unstable_by_key(|&(a, b, k)| (b, a, k as u8));
        edges.dedup_by_key(|&mut (a, b, _)| (a, b));

        let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n, edges.len());
        for _ in 0..n {
            g.add_node(());
        }
        for &(a, b, _) in &edges {
            g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
        }
        let mut cycles: Vec<Vec<String>> = petgraph::algo::tarjan_scc(&g)
            .into_iter()
            .filter(|scc| scc.len() > 1 || g.contains_edge(scc[0], scc[0]))
            .map(|mut scc| {
                scc.sort();
                scc.into_iter()
                    .map(|i| names[i.index()].to_string())
                    .collect()
            })
            .collect();
        if !cycles.is_empty() {
            cycles.sort();
            return Err(Error::Cycle { cycles });
        }

        let mut preds = vec![Vec::new(); n];
        let mut succs = vec![Vec::new(); n];
        for &(a, b, _) in &edges {
            preds[b].push(a);
            succs[a].push(b);
        }
        let declared = data
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.sort_unstable();
                d.dedup();
                Arc::from(d)
            })
            .collect();
        let topo = kahn(&preds, &succs, |i| i);
        Ok(Graph {
            preds,
            succs,
            declared,
            edges,
            topo,
        })
    }

    /// The edges into node `i`: a contiguous run, since `edges` is sorted by target.
    pub(crate) fn edges_into(&self, i: usize) -> &[(usize, usize, EdgeKind)] {
        let start = self.edges.partition_point(|&(_, b, _)| b < i);
        let end = self.edges.partition_point(|&(_, b, _)| b <= i);
        &self.edges[start..end]
    }

    /// The longest path through the graph, each node weighing `weight(i)`: its nodes in order and
    /// its total.
    pub(crate) fn longest_path(
        &self,
        order: &[usize],
        forward: bool,
        weight: impl Fn(usize) -> f64,
    ) -> (Vec<usize>, f64) {
        let before = if forward { &self.preds } else { &self.succs };
        let n = before.len();
        let mut dist = vec![0.0; n];
        let mut prev = vec![usize::MAX; n];
        for &i in order {
            let (best, from) = before[i]
                .iter()
                .map(|&p| (dist[p], p))
                .fold((0.0, usize::MAX), |a, b| if b.0 > a.0 { b } else { a });
            dist[i] = best + weight(i);
            prev[i] = from;
        }
        let Some(mut end) = (0..n).max_by(|&a, &b| dist[a].total_cmp(&dist[b])) else {
            return (Vec::new(), 0.0);
        };
        let total = dist[end];
        let mut path = vec![end];
        while prev[end] != usize::MAX {
            end = prev[end];
            path.push(end);
        }
        path.reverse();
        (path, total)
    }
}

/// Kahn's algorithm, taking the ready node with the smallest `key` first.
pub(crate) fn kahn(
    preds: &[Vec<usize>],
    succs: &[Vec<usize>],
    key: impl Fn(usize) -> usize,
) -> Vec<usize> {
    let mut waiting: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..preds.len())
        .filter(|&i| waiting[i] == 0)
        .map(|i| Reverse((key(i), i)))
        .collect();
    let mut order = Vec::with_capacity(preds.len());
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &s in &succs[i] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                ready.push(Reverse((key(s), s)));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Arc<str>> {
        (0..n).map(|i| Arc::from(format!("m{i}"))).collect()
    }

    #[test]
    fn final_phase_runs_after_every_other_module() {
        // m0 -> m1, m2 independent, m3 final reads m0
        let phases = [Phase::Main, Phase::Main, Phase::Main, Phase::Final];
        let g = Graph::build(&names(4), &phases, &[vec![], vec![0], vec![], vec![0]], &[]).unwrap();
        let mut p = g.preds[3].clone();
        p.sort();
        assert_eq!(p, vec![0, 1, 2]);
        assert_eq!(*g.topo.last().unwrap(), 3);
    }

    #[test]
    fn a_main_module_reading_a_final_one_is_a_cycle() {
        let phases = [Phase::Main, Phase::Final, Phase::Main];
        let err = Graph::build(&names(3), &phases, &[vec![], vec![0], vec![1]], &[]).unwrap_err();
        match err {
            Error::Cycle { cycles } => {
                assert_eq!(cycles, vec![vec!["m1".to_string(), "m2".to_string()]])
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn longest_path_follows_weights() {
        let phases = [Phase::Main; 4];
        let g = Graph::build(
            &names(4),
            &phases,
            &[vec![], vec![0], vec![0], vec![1, 2]],
            &[],
        )
        .unwrap();
        let w = [1.0, 5.0, 2.0, 1.0];
        let (path, total) = g.longest_path(&g.topo, true, |i| w[i]);
        assert_eq!(path, vec![0, 1, 3]);
        assert_eq!(total, 7.0);
    }
}

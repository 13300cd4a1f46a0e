//! Names across a graph and its subgraphs: which are taken (so inserted values and nodes get
//! fresh ones), and which a subgraph reads from the scopes around it.

use std::collections::{BTreeSet, HashSet};

use crate::proto::GraphProto;

/// Names not yet used anywhere in the model, derived from readable bases.
#[derive(Debug)]
pub(crate) struct Names {
    used: HashSet<String>,
}

impl Names {
    /// Every value and node name of `graph` and its subgraphs.
    pub fn of(graph: &GraphProto) -> Self {
        let mut names = Self {
            used: HashSet::new(),
        };
        names.collect(graph);
        names
    }

    fn collect(&mut self, graph: &GraphProto) {
        let infos = graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info);
        self.used.extend(infos.map(|v| v.name().to_owned()));
        self.used
            .extend(graph.initializer.iter().map(|t| t.name().to_owned()));
        for node in &graph.node {
            self.used.extend(node.output.iter().cloned());
            self.used.insert(node.name().to_owned());
            for attribute in &node.attribute {
                attribute
                    .g
                    .iter()
                    .chain(&attribute.graphs)
                    .for_each(|g| self.collect(g));
            }
        }
    }

    /// `base`, or `base_1`, `base_2`, ... whichever is free first.
    pub fn fresh(&mut self, base: String) -> String {
        let mut candidate = base.clone();
        let mut counter = 0;
        while self.used.contains(&candidate) {
            counter += 1;
            candidate = format!("{base}_{counter}");
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

/// Adds to `out` the names `graph` (or its nested subgraphs) reads from enclosing scopes.
pub(crate) fn outer_refs(graph: &GraphProto, out: &mut BTreeSet<String>) {
    let mut defined: HashSet<&str> = graph.input.iter().map(|i| i.name()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name()));
    defined.extend(
        graph
            .sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref())
            .map(|t| t.name()),
    );
    defined.extend(
        graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    let mut used = BTreeSet::new();
    for node in &graph.node {
        used.extend(node.input.iter().filter(|i| !i.is_empty()).cloned());
        for attribute in &node.attribute {
            attribute
                .g
                .iter()
                .chain(&attribute.graphs)
                .for_each(|g| outer_refs(g, &mut used));
        }
    }
    used.extend(graph.output.iter().map(|o| o.name().to_owned()));
    out.extend(
        used.into_iter()
            .filter(|name| !defined.contains(name.as_str())),
    );
}

"""The pass pipeline: named stages run in order; each stage's graph can be dumped by name.

``optimize(graph)`` is the default pipeline: simplify + CSE + DCE to a fixed point, then the merging
rewrites of ``merge.py`` (many small dots and pads into few large ones) and simplify again. With
``verify_each=True`` (the tests' setting) the verifier runs after every stage.
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..ir.graph import Graph
from ..ir.verify import verify
from .cse import eliminate_common_subexpressions, has_twins
from .dce import eliminate_dead_code
from .merge import merge_small_operations
from .simplify import simplify, would_simplify

Pass = Callable[[Graph], Graph]
MAX_ROUNDS = 8


def simplify_to_fixed_point(graph: Graph) -> Graph:
    """Simplify + CSE + DCE until a round changes nothing: no rule fired, no twin merged, no node died
    (then the graph is the previous one, copied; counting is cheaper than comparing printed graphs).

    Before each round after the first, the graph is checked without copying it: when no rule would fire
    and no two nodes are twins, the round would return a copy of it (it is dead-code free already), so
    it is the result. The check costs the rules and the keys only, and replaces the last round, which
    otherwise rebuilt the whole graph twice to find that nothing changes."""
    for round_ in range(MAX_ROUNDS):
        if round_ and not would_simplify(graph) and not has_twins(graph):
            break
        changes = {"rewrites": 0}
        before = len(graph.nodes)
        graph = eliminate_dead_code(eliminate_common_subexpressions(simplify(graph, changes), changes))
        if changes["rewrites"] == 0 and len(graph.nodes) == before:
            break
    return graph


class Pipeline:
    def __init__(self, stages: Sequence[tuple[str, Pass]]):
        self.stages = list(stages)

    def run(self, graph: Graph, dump: Callable[[str, Graph], None] | None = None,
            verify_each: bool = False) -> Graph:
        """Run the stages; ``dump(stage_name, graph)`` is called with the input ('traced') and each result."""
        if dump:
            dump("traced", graph)
        for name, stage in self.stages:
            graph = stage(graph)
            if verify_each:
                verify(graph)
            if dump:
                dump(name, graph)
        return graph


DEFAULT = Pipeline([("simplify", simplify_to_fixed_point), ("merge", merge_small_operations),
                    ("simplify-merged", simplify_to_fixed_point)])


def optimize(graph: Graph, dump=None, verify_each: bool = False) -> Graph:
    return DEFAULT.run(graph, dump=dump, verify_each=verify_each)

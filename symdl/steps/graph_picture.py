"""The picture of a computational graph: networkx for the structure and layout, matplotlib to draw.

Nodes are placed in columns by their depth from the inputs, heights by the barycentre of their users; each edge
carries the forward value above it (green) and the gradient flowing back along it below it (red), as in
CS231n's circuit diagrams. Output: SVG (HTML), PDF or PNG (LaTeX), as bytes; deterministic (no dates).
"""

from __future__ import annotations

import io

from symdl.steps.graph import GraphDerivation


#: A white box behind an edge label keeps it legible where edges cross.
_LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}


def _graph(d: GraphDerivation):  # noqa: ANN202 - a networkx.DiGraph
    """The graph with each node's column (``layer``): operations one right of their deepest operand, each input
    one left of its first user (so that no edge from an input runs through a column of nodes)."""
    import networkx as nx

    g = nx.DiGraph()
    layer = {x: 0 for x in d.inputs}
    for node in d.nodes:
        layer[node.name] = 1 + max((layer[o] for o in node.operands), default=0)
    for x in d.inputs:
        users = [layer[node.name] for node in d.nodes if x in node.operands]
        layer[x] = min(users, default=1) - 1
    for x in d.inputs:
        g.add_node(x, label=x, layer=layer[x])
    for node in d.nodes:
        g.add_node(node.name, label=f"{node.name}\n{node.op}", layer=layer[node.name])
        for operand in dict.fromkeys(node.operands):
            gradient = sum(r.contribution for r in d.rows if r.node == node.name and r.operand == operand)
            g.add_edge(operand, node.name, value=d.values[operand], grad=gradient)
    return g


def _positions(g, output: str) -> dict[str, tuple[float, float]]:  # noqa: ANN001 - a networkx.DiGraph
    """Layered positions: the output at height 0; right to left, each node at the mean height of its users,
    nodes of one column then spread one unit apart in that order (the barycentre heuristic: few crossings)."""
    columns: dict[int, list[str]] = {}
    for name, attributes in g.nodes(data=True):
        columns.setdefault(attributes["layer"], []).append(name)
    height: dict[str, float] = {output: 0.0}
    for k in sorted(columns, reverse=True):
        wanted = {name: (sum(height[u] for u in g.successors(name)) / max(1, g.out_degree(name))
                         if g.out_degree(name) else 0.0) for name in columns[k]}
        order = sorted(columns[k], key=lambda name: (-wanted[name], columns[k].index(name)))
        centre = sum(wanted.values()) / len(order)
        for i, name in enumerate(order):
            height[name] = centre + 0.5 * (len(order) - 1) - i
    return {name: (float(g.nodes[name]["layer"]), height[name]) for name in g.nodes}


def draw(d: GraphDerivation, fmt: str = "svg") -> bytes:
    """The picture in ``fmt`` (``svg``, ``pdf`` or ``png``) as bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import networkx as nx

    with matplotlib.rc_context({"svg.hashsalt": "symdl"}):  # deterministic SVG ids
        return _draw(d, fmt, plt, nx)


def _draw(d: GraphDerivation, fmt: str, plt, nx) -> bytes:  # noqa: ANN001 - the pyplot and networkx modules
    g = _graph(d)
    layers = 1 + max(nx.get_node_attributes(g, "layer").values())
    position = _positions(g, d.output)
    height = max(sum(1 for _, a in g.nodes(data=True) if a["layer"] == k) for k in range(layers))
    figure, axes = plt.subplots(figsize=(max(6.0, 2.2 * layers), max(2.5, 1.3 * height)))
    axes.set_axis_off()
    nx.draw_networkx_edges(g, position, ax=axes, arrows=True, arrowsize=14, node_size=1600, edge_color="#555")
    nx.draw_networkx_nodes(g, position, ax=axes, node_size=1600, node_color="#e8eef7", edgecolors="#335")
    nx.draw_networkx_labels(g, position, labels=nx.get_node_attributes(g, "label"), ax=axes, font_size=8)
    for a, b, data in g.edges(data=True):
        (x0, y0), (x1, y1) = position[a], position[b]
        # labels sit 0.45 columns from the end where the edge has no sibling: after a source used once,
        # before the target when the source fans out (its edges leave together and part later)
        span = max(x1 - x0, 1.0)
        t = 0.45 / span if g.out_degree(a) == 1 else 1.0 - 0.45 / span
        xm, ym = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        axes.annotate(f"{data['value']:.3g}", (xm, ym), xytext=(0, 5), textcoords="offset points", ha="center",
                      va="bottom", color="#0a7d28", fontsize=8, bbox=_LABEL_BOX)
        axes.annotate(f"{data['grad']:.3g}", (xm, ym), xytext=(0, -5), textcoords="offset points", ha="center",
                      va="top", color="#c0161d", fontsize=8, bbox=_LABEL_BOX)
    out = d.output
    axes.annotate(f"f = {d.value:.4g}\ndf/df = 1", position[out], xytext=(34, 0), textcoords="offset points",
                  va="center", fontsize=8)
    axes.margins(0.15)
    buffer = io.BytesIO()
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}, "png": {}}[fmt]
    figure.savefig(buffer, format=fmt, bbox_inches="tight", metadata=metadata, dpi=150)
    plt.close(figure)
    return buffer.getvalue()

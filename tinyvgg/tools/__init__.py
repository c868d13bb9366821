"""Tools that look at the engine from outside: gradient checks, the GPU self-check, the
autograd graph, the profiler and model summaries. They read the engine through its public
hooks (``tensor.topological_order``, ``tensor.active_profiler``) and are never imported by it.

    gradcheck.py   float64 finite differences against an op's backward
    selfcheck.py   every op on the GPU against the CPU (``tinyvgg selfcheck``)
    graph.py       the recorded graph as a table or a Graphviz drawing
    profiler.py    time and memory per op and per layer
    summary.py     a model's layers, shapes, parameters and memory
"""

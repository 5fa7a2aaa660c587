"""Drop-in figures (not a test): Pyomo through `SolverFactory('meshsolve')`
against the local `cbc` executable, in one run on one machine.

    MESHSOLVE_BIN_DIR=target/release .venv/bin/python tests/python/bench_dropin.py

Needs `cbc` on PATH (Debian: coinor-cbc). Starts two local workers of two
slots (mDNS on loopback) in a private namespace.
"""

import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyomo.environ as pyo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conftest  # noqa: E402


def knapsack(k=0):
    m = pyo.ConcreteModel()
    w, v = [3, 4, 5, 6], [4 + k % 3, 5, 6, 7]
    m.x = pyo.Var(range(4), domain=pyo.Binary)
    m.value = pyo.Objective(expr=sum(v[i] * m.x[i] for i in range(4)), sense=pyo.maximize)
    m.weight = pyo.Constraint(expr=sum(w[i] * m.x[i] for i in range(4)) <= 10)
    return m


def timed(solver, k=0):
    m = knapsack(k)
    t = time.perf_counter()
    r = pyo.SolverFactory(solver).solve(m)
    assert str(r.solver.termination_condition) == "optimal", r
    return time.perf_counter() - t


def main():
    lab = conftest.Lab(tempfile.mkdtemp(), "bench" + uuid.uuid4().hex[:8])
    lab.start_worker(lab.ns + "-a")
    lab.start_worker(lab.ns + "-b")
    try:
        lab.wait_for(2)
        os.environ.update({k: v for k, v in lab.env.items() if k.startswith("MESHSOLVE_") or k == "PATH"})
        reps = int(os.environ.get("REPS", "15"))
        timed("meshsolve")
        timed("cbc")
        mesh = [timed("meshsolve", k) for k in range(reps)]
        cbc = [timed("cbc", k) for k in range(reps)]
        mm, cm = statistics.median(mesh), statistics.median(cbc)
        print(f"one tiny Pyomo solve, median of {reps}: meshsolve {mm * 1000:.0f} ms, local cbc {cm * 1000:.0f} ms, ratio x{mm / cm:.2f}")
        n = int(os.environ.get("MODELS", "100"))
        t = time.perf_counter()
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda k: timed("meshsolve", k), range(n)))
        par = time.perf_counter() - t
        t = time.perf_counter()
        for k in range(n):
            timed("cbc", k)
        seq = time.perf_counter() - t
        print(f"{n} small Pyomo solves: 4 threads on the mesh {par:.1f} s, one after another with local cbc {seq:.1f} s, ratio x{par / seq:.2f} (time, lower is better)")
    finally:
        lab.stop()


if __name__ == "__main__":
    main()

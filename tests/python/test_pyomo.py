"""Pyomo sends its solves to the mesh with `SolverFactory('meshsolve')`: the
AMPL protocol end to end, against real meshworker processes."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pyomo.environ as pyo
import pytest
from pyomo.opt import TerminationCondition as TC

import nlbin
from conftest import market_split


def knapsack():
    """Optimum 12: items 2 and 4 (weights 4 + 6 = 10, values 5 + 7)."""
    m = pyo.ConcreteModel()
    w, v = [3, 4, 5, 6], [4, 5, 6, 7]
    m.x = pyo.Var(range(4), domain=pyo.Binary)
    m.value = pyo.Objective(expr=sum(v[i] * m.x[i] for i in range(4)), sense=pyo.maximize)
    m.weight = pyo.Constraint(expr=sum(w[i] * m.x[i] for i in range(4)) <= 10)
    return m


def small_lp(sense=pyo.minimize):
    """min x + y s.t. x + 2y >= 2, 3x + y >= 3: x = 0.8, y = 0.6, duals 0.4 and 0.2."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.y = pyo.Var(within=pyo.NonNegativeReals)
    s = 1 if sense == pyo.minimize else -1
    m.obj = pyo.Objective(expr=s * (m.x + m.y), sense=sense)
    m.c0 = pyo.Constraint(expr=m.x + 2 * m.y >= 2)
    m.c1 = pyo.Constraint(expr=3 * m.x + m.y >= 3)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


def market_split_model():
    """The shipped market-split instance in Pyomo: runs until its time limit."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(36), domain=pyo.Binary)
    m.sp = pyo.Var(range(4), within=pyo.NonNegativeReals)
    m.sn = pyo.Var(range(4), within=pyo.NonNegativeReals)
    m.obj = pyo.Objective(expr=sum(m.sp[i] + m.sn[i] for i in range(4)))
    m.c = pyo.ConstraintList()
    for i, (a, b) in enumerate(market_split()):
        m.c.add(sum(a[j] * m.x[j] for j in range(36)) + m.sp[i] - m.sn[i] == b)
    return m


def test_version_probe_and_availability(lab):
    out = subprocess.run(["meshsolve", "-v"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("meshsolve "), out
    assert pyo.SolverFactory("meshsolve").available()


def test_knapsack_mip(lab):
    m = knapsack()
    r = pyo.SolverFactory("meshsolve").solve(m)
    assert r.solver.termination_condition == TC.optimal
    assert pyo.value(m.value) == pytest.approx(12)
    assert [round(pyo.value(m.x[i])) for i in range(4)] == [0, 1, 0, 1]


def test_lp_duals_in_both_senses(lab):
    m = small_lp()
    r = pyo.SolverFactory("meshsolve").solve(m)
    assert r.solver.termination_condition == TC.optimal
    assert pyo.value(m.x) == pytest.approx(0.8) and pyo.value(m.y) == pytest.approx(0.6)
    assert m.dual[m.c0] == pytest.approx(0.4) and m.dual[m.c1] == pytest.approx(0.2)
    # The same LP as a maximisation: the duals change sign, as with other ASL solvers.
    m = small_lp(pyo.maximize)
    pyo.SolverFactory("meshsolve").solve(m)
    assert m.dual[m.c0] == pytest.approx(-0.4) and m.dual[m.c1] == pytest.approx(-0.2)


def test_symbolic_labels(lab):
    m = knapsack()
    r = pyo.SolverFactory("meshsolve").solve(m, symbolic_solver_labels=True)
    assert r.solver.termination_condition == TC.optimal
    assert pyo.value(m.value) == pytest.approx(12)


def test_infeasible_and_unbounded(lab):
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 10))
    m.obj = pyo.Objective(expr=m.x)
    m.a = pyo.Constraint(expr=m.x >= 5)
    m.b = pyo.Constraint(expr=m.x <= 3)
    r = pyo.SolverFactory("meshsolve").solve(m, load_solutions=False)
    assert r.solver.termination_condition == TC.infeasible
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.y = pyo.Var(within=pyo.NonNegativeReals)
    m.obj = pyo.Objective(expr=-m.x - m.y)
    m.c = pyo.Constraint(expr=m.x - m.y <= 1)
    r = pyo.SolverFactory("meshsolve").solve(m, load_solutions=False)
    assert r.solver.termination_condition == TC.unbounded


def test_options_reach_the_solver(lab):
    m = knapsack()
    opt = pyo.SolverFactory("meshsolve")
    # Pyomo reserves the option name `solver`; `subsolver` reaches meshsolve as `solver`.
    r = opt.solve(m, options={"time_limit": 30, "mip_rel_gap": 0.0, "subsolver": "microlp"})
    assert r.solver.termination_condition == TC.optimal
    assert "microlp" in str(r.solver.message)
    # An option no solver takes fails the solve with the solver's own message.
    r = opt.solve(knapsack(), options={"no_such_option": 1}, load_solutions=False)
    assert r.solver.termination_condition != TC.optimal


def test_serial_solver_manager_queue(lab):
    mgr = pyo.SolverManagerFactory("serial")
    models = [knapsack() for _ in range(3)]
    handles = [mgr.queue(m, opt=pyo.SolverFactory("meshsolve")) for m in models]
    for h in handles:
        assert mgr.wait_for(h).solver.termination_condition == TC.optimal
    assert [pyo.value(m.value) for m in models] == [12, 12, 12]


def test_threads_spread_over_both_workers(lab):
    def solve(_):
        m = knapsack()
        r = pyo.SolverFactory("meshsolve").solve(m)
        return pyo.value(m.value), str(r.solver.message)

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(solve, range(8)))
    assert [v for v, _ in results] == [12] * 8
    workers = {msg.split(" on worker ")[1].split()[0] for _, msg in results}
    assert workers == set(lab.workers), workers


def test_text_and_binary_nl_read_the_same(lab, tmp_path):
    m = small_lp()
    m.write(str(tmp_path / "lp.nl"), io_options={"symbolic_solver_labels": False})
    text = (tmp_path / "lp.nl").read_text()
    (tmp_path / "bin.nl").write_bytes(nlbin.convert(text))
    assert (tmp_path / "bin.nl").read_bytes()[:1] == b"b"
    for stub in ["lp", "bin"]:
        out = subprocess.run(["meshsolve", str(tmp_path / f"{stub}.nl"), "-AMPL"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out
    assert (tmp_path / "lp.sol").read_text().split("\n\n", 1)[1] == (tmp_path / "bin.sol").read_text().split("\n\n", 1)[1]


def test_garbage_nl_is_a_clear_error(lab, tmp_path):
    (tmp_path / "junk.nl").write_text("this is not an nl file\n")
    out = subprocess.run(["meshsolve", str(tmp_path / "junk.nl"), "-AMPL"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "junk.nl" in out.stderr and "line 1" in out.stderr, out
    # A readable header with a broken body: the .sol says what is wrong, exit 0.
    m = knapsack()
    m.write(str(tmp_path / "k.nl"), io_options={"symbolic_solver_labels": False})
    body = (tmp_path / "k.nl").read_text().replace("\nJ0 4\n0 ", "\nJ0 4\n99 ")
    (tmp_path / "k.nl").write_text(body)
    out = subprocess.run(["meshsolve", str(tmp_path / "k.nl"), "-AMPL"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    sol = (tmp_path / "k.sol").read_text()
    assert "out of range" in sol and sol.rstrip().endswith("objno 0 502"), sol


def test_quadratic_objective(lab):
    """min (x-1)^2 + (y-2)^2 s.t. x + y <= 2: x = 0.5, y = 1.5, objective 0.5."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.y = pyo.Var(within=pyo.NonNegativeReals)
    m.obj = pyo.Objective(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2 + 0 * m.x * m.y)
    m.c = pyo.Constraint(expr=m.x + m.y <= 2)
    r = pyo.SolverFactory("meshsolve").solve(m, load_solutions=False)
    has_qp = "highs" in lab.solvers
    if has_qp:
        assert r.solver.termination_condition == TC.optimal, r
        m.solutions.load_from(r)
        assert pyo.value(m.x) == pytest.approx(0.5, abs=1e-6) and pyo.value(m.y) == pytest.approx(1.5, abs=1e-6)
        assert pyo.value(m.obj) == pytest.approx(0.5, abs=1e-6)
    else:
        # Only the pure-Rust build's microlp here: no QP solver, and the message says which is needed.
        assert r.solver.termination_condition != TC.optimal
        assert "highs" in str(r.solver.message), r.solver.message


def test_nonlinear_models_are_refused(lab):
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 2))
    m.obj = pyo.Objective(expr=(m.x - 1) ** 3)
    r = pyo.SolverFactory("meshsolve").solve(m, load_solutions=False)
    assert r.solver.termination_condition != TC.optimal
    assert "linear or quadratic" in str(r.solver.message), r.solver.message
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 2))
    m.y = pyo.Var(bounds=(0, 2))
    m.obj = pyo.Objective(expr=m.x + m.y)
    m.c = pyo.Constraint(expr=m.x * m.y >= 1)
    r = pyo.SolverFactory("meshsolve").solve(m, load_solutions=False)
    assert r.solver.termination_condition != TC.optimal
    assert "nonlinear" in str(r.solver.message), r.solver.message


def test_no_worker_fails_and_solves_nothing_locally(lab, monkeypatch):
    monkeypatch.setenv("MESHSOLVE_NAMESPACE", "nobody" + str(os.getpid()))
    monkeypatch.setenv("meshsolve_options", "wait=0.5")
    m = knapsack()
    r = pyo.SolverFactory("meshsolve").solve(m, load_solutions=False)
    assert r.solver.termination_condition != TC.optimal
    assert "no meshsolve worker" in str(r.solver.message)
    with pytest.raises(Exception):
        pyo.SolverFactory("meshsolve").solve(knapsack())


def test_killing_the_python_process_stops_the_remote_solve(lab, tmp_path):
    # The market-split instance: plain branch and bound runs until its time limit.
    script = tmp_path / "hard.py"
    script.write_text(textwrap.dedent(f"""
        import pyomo.environ as pyo
        rows = {market_split()!r}
        m = pyo.ConcreteModel()
        m.x = pyo.Var(range(36), domain=pyo.Binary)
        m.sp = pyo.Var(range(4), within=pyo.NonNegativeReals)
        m.sn = pyo.Var(range(4), within=pyo.NonNegativeReals)
        m.obj = pyo.Objective(expr=sum(m.sp[i] + m.sn[i] for i in range(4)))
        m.c = pyo.ConstraintList()
        for i, (a, b) in enumerate(rows):
            m.c.add(sum(a[j] * m.x[j] for j in range(36)) + m.sp[i] - m.sn[i] == b)
        pyo.SolverFactory("meshsolve").solve(m, options={{"time_limit": 120, "solver": "microlp"}})
    """))
    child = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 30
    while not lab.solver_children():
        assert time.time() < deadline, "the remote solve did not start"
        assert child.poll() is None, "the script ended before its solve started"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.time() + 10
    while lab.solver_children():
        assert time.time() < deadline, f"solver processes left on the workers: {lab.solver_children()}"
        time.sleep(0.1)


def test_pyomo_time_limit_kill_stops_the_remote_solve(lab):
    # Pyomo's own time limit kills the solver executable with SIGKILL; the worker
    # then notices the lost connection (QUIC idle timeout, 1.2 s) and kills the solve.
    m = market_split_model()
    with pytest.raises(Exception):
        pyo.SolverFactory("meshsolve").solve(m, timelimit=1, options={"subsolver": "microlp", "time_limit": 300})
    deadline = time.time() + 5
    while lab.solver_children():
        assert time.time() < deadline, f"solver processes left on the workers: {lab.solver_children()}"
        time.sleep(0.05)

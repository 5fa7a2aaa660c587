"""PuLP sends its solves to the mesh through `COIN_CMD(path=meshsolve)`: the
CBC command line end to end, against real meshworker processes."""

import pulp

from conftest import market_split


def knapsack():
    prob = pulp.LpProblem("knapsack", pulp.LpMaximize)
    x = [pulp.LpVariable(f"x{i}", cat="Binary") for i in range(4)]
    w, v = [3, 4, 5, 6], [4, 5, 6, 7]
    prob += pulp.lpSum(v[i] * x[i] for i in range(4))
    prob += pulp.lpSum(w[i] * x[i] for i in range(4)) <= 10
    return prob, x


def test_knapsack(meshsolve_exe):
    prob, x = knapsack()
    status = prob.solve(pulp.COIN_CMD(path=meshsolve_exe, msg=False))
    assert pulp.LpStatus[status] == "Optimal"
    assert pulp.value(prob.objective) == 12
    assert [round(v.value()) for v in x] == [0, 1, 0, 1]


def test_lp_duals(meshsolve_exe):
    prob = pulp.LpProblem("lp", pulp.LpMinimize)
    x = pulp.LpVariable("x", lowBound=0)
    y = pulp.LpVariable("y", lowBound=0)
    prob += x + y
    prob += x + 2 * y >= 2, "c0"
    prob += 3 * x + y >= 3, "c1"
    status = prob.solve(pulp.COIN_CMD(path=meshsolve_exe, msg=False))
    assert pulp.LpStatus[status] == "Optimal"
    assert abs(x.value() - 0.8) < 1e-7 and abs(y.value() - 0.6) < 1e-7
    assert abs(prob.constraints["c0"].pi - 0.4) < 1e-7 and abs(prob.constraints["c1"].pi - 0.2) < 1e-7


def test_infeasible(meshsolve_exe):
    prob = pulp.LpProblem("inf", pulp.LpMinimize)
    y = pulp.LpVariable("y", lowBound=0)
    prob += y
    prob += y >= 5
    prob += y <= 3
    status = prob.solve(pulp.COIN_CMD(path=meshsolve_exe, msg=False))
    assert pulp.LpStatus[status] == "Infeasible"


def test_time_limited(meshsolve_exe):
    # The shipped market-split instance: plain branch and bound cannot finish it.
    prob = pulp.LpProblem("split", pulp.LpMinimize)
    x = [pulp.LpVariable(f"x{j}", cat="Binary") for j in range(36)]
    sp = [pulp.LpVariable(f"sp{i}", lowBound=0) for i in range(4)]
    sn = [pulp.LpVariable(f"sn{i}", lowBound=0) for i in range(4)]
    prob += pulp.lpSum(sp) + pulp.lpSum(sn)
    for i, (a, b) in enumerate(market_split()):
        prob += pulp.lpSum(a[j] * x[j] for j in range(36)) + sp[i] - sn[i] == b
    status = prob.solve(pulp.COIN_CMD(path=meshsolve_exe, msg=False, timeLimit=1))
    # Stopped by the limit: a feasible point (status Optimal with a feasible
    # solution status, as CBC reports it) or none at all (Not Solved).
    assert pulp.LpStatus[status] in ("Optimal", "Not Solved")
    assert prob.sol_status in (pulp.LpSolutionIntegerFeasible, pulp.LpSolutionOptimal, pulp.LpSolutionNoSolutionFound)

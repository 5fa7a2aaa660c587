# meshsolve's driver for solvers with a Python API. It ships inside the meshsolve
# binaries and runs as `python3 -I -c <this file> detect|solve ...`.
#
#   detect                          -> {"gurobi": {"version": "...", "limited": true}, "cplex": {"error": "..."}, ...}
#   solve SOLVER MODEL.mps OPTS.json -> {"status": ..., "objective": ..., "values": {...}, "duals": {...}|null}
#                                       or {"error": "...", "kind": "licence_size"|"licence_unavailable"|"solver"}
#
# The answer is one JSON document on the original standard output; everything the
# solver prints goes to standard error (file descriptor 1 is pointed there first,
# so C libraries that write to it directly cannot corrupt the answer).
import json
import os
import sys

_answer = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr

SOLVERS = ["gurobi", "cplex", "xpress", "highs", "scip"]
MODULES = {"gurobi": "gurobipy", "cplex": "cplex", "xpress": "xpress", "highs": "highspy", "scip": "pyscipopt"}


class Refused(Exception):
    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind


def set_options(solver, extra, setter):
    """Passes `key=value` options through; an option the solver refuses fails the job."""
    for k, v in extra:
        try:
            setter(k, v)
        except Exception as e:
            raise Refused("model", "%s does not take option %s=%s: %s" % (solver, k, v, e))


def answer(doc):
    _answer.write(json.dumps(doc))
    _answer.flush()


def quiet_xpress():
    import warnings

    warnings.filterwarnings("ignore")
    import xpress

    return xpress


# ---------------------------------------------------------------- gurobi
def gurobi_env(log):
    import gurobipy as gp

    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 1 if log else 0)
    env.start()
    return env


def gurobi_refusal(e):
    text = str(e)
    if e.errno == 10010:
        return Refused("licence_size", "gurobi: " + text)
    if e.errno in (10009, 10022, 10023, 10024, 10030, 10032) or "token" in text.lower() or "licen" in text.lower():
        return Refused("licence_unavailable", "gurobi: " + text)
    return Refused("solver", "gurobi: " + text)


def gurobi_detect():
    import gurobipy as gp

    version = "%d.%d.%d" % gp.gurobi.version()
    try:
        env = gurobi_env(False)
        m = gp.Model(env=env)
        m.addVars(2001)
        m.optimize()
        limited = False
    except gp.GurobiError as e:
        r = gurobi_refusal(e)
        if r.kind == "licence_unavailable":
            # A licence server that is down now may be up when a job comes.
            return {"version": version, "limited": False, "note": str(r)}
        if r.kind != "licence_size":
            raise r
        limited = True
    return {"version": version, "limited": limited}


def gurobi_solve(path, o):
    import gurobipy as gp
    from gurobipy import GRB

    try:
        env = gurobi_env(o["log"])
        m = gp.read(path, env)
        if o["time_limit"] is not None:
            m.Params.TimeLimit = o["time_limit"]
        if o["mip_gap"] is not None:
            m.Params.MIPGap = o["mip_gap"]
        m.Params.Threads = o["threads"]
        set_options("gurobi", o["extra"], m.setParam)
        m.optimize()
        if m.Status == GRB.INF_OR_UNBD:
            m.Params.DualReductions = 0
            m.optimize()
    except gp.GurobiError as e:
        raise gurobi_refusal(e)
    s = m.Status
    has = m.SolCount > 0
    if s == GRB.OPTIMAL:
        status = "optimal"
    elif s == GRB.INFEASIBLE:
        status = "infeasible"
    elif s == GRB.UNBOUNDED:
        status = "unbounded"
    elif has:
        status = "feasible"
    elif s == GRB.TIME_LIMIT:
        status = "time_limit"
    else:
        raise Refused("solver", "gurobi stopped with status %d and no solution" % s)
    out = {"status": status, "objective": None, "values": {}, "duals": None}
    if has and status in ("optimal", "feasible"):
        out["objective"] = m.ObjVal
        out["values"] = {v.VarName: v.X for v in m.getVars()}
        if o["duals"] and not m.IsMIP and status == "optimal":
            out["duals"] = {c.ConstrName: c.Pi for c in m.getConstrs()}
    return out


# ---------------------------------------------------------------- cplex
def cplex_problem(log):
    import cplex

    c = cplex.Cplex()
    if not log:
        c.set_log_stream(None)
        c.set_results_stream(None)
        c.set_warning_stream(None)
    return c


def cplex_refusal(e):
    import cplex

    code = e.args[2] if len(e.args) > 2 else None
    text = str(e.args[0]) if e.args else str(e)
    if code == 1016:
        return Refused("licence_size", "cplex: " + text.strip())
    if isinstance(code, int) and 32000 <= code < 33000:
        return Refused("licence_unavailable", "cplex: " + text.strip())
    return Refused("solver", "cplex: " + text.strip())


def cplex_detect():
    import cplex

    c = cplex_problem(False)
    version = c.get_version()
    c.variables.add(obj=[1.0] * 1001, ub=[1.0] * 1001)
    try:
        c.solve()
        limited = False
    except cplex.exceptions.CplexError as e:
        r = cplex_refusal(e)
        if r.kind == "licence_unavailable":
            return {"version": version, "limited": False, "note": str(r)}
        if r.kind != "licence_size":
            raise r
        limited = True
    return {"version": version, "limited": limited}


def cplex_solve(path, o):
    import cplex

    try:
        c = cplex_problem(o["log"])
        c.read(path)
        if o["time_limit"] is not None:
            c.parameters.timelimit.set(o["time_limit"])
        if o["mip_gap"] is not None:
            c.parameters.mip.tolerances.mipgap.set(o["mip_gap"])
        c.parameters.threads.set(o["threads"])
        def setter(k, v):
            p = c.parameters
            for part in k.split("."):
                p = getattr(p, part)
            p.set(type(p.get())(v))

        set_options("cplex", o["extra"], setter)
        c.solve()
        st = c.solution.status
        s = c.solution.get_status()
        if s in (st.infeasible_or_unbounded, st.MIP_infeasible_or_unbounded):
            c.parameters.preprocessing.presolve.set(0)
            c.solve()
            s = c.solution.get_status()
    except cplex.exceptions.CplexError as e:
        raise cplex_refusal(e)
    has = c.solution.is_primal_feasible()
    if s in (st.optimal, st.MIP_optimal, st.optimal_tolerance):
        status = "optimal"
    elif s in (st.infeasible, st.MIP_infeasible):
        status = "infeasible"
    elif s in (st.unbounded, st.MIP_unbounded):
        status = "unbounded"
    elif has:
        status = "feasible"
    elif s in (st.abort_time_limit, st.MIP_time_limit_infeasible, st.MIP_time_limit_feasible):
        status = "time_limit"
    else:
        raise Refused("solver", "cplex stopped with status %s and no solution" % c.solution.get_status_string())
    out = {"status": status, "objective": None, "values": {}, "duals": None}
    if has and status in ("optimal", "feasible"):
        out["objective"] = c.solution.get_objective_value()
        out["values"] = dict(zip(c.variables.get_names(), c.solution.get_values()))
        mip = c.get_problem_type() not in (c.problem_type.LP, c.problem_type.QP)
        if o["duals"] and not mip and status == "optimal":
            out["duals"] = dict(zip(c.linear_constraints.get_names(), c.solution.get_dual_values()))
    return out


# ---------------------------------------------------------------- xpress
def xpress_refusal(e):
    text = str(e)
    low = text.lower()
    if "too many rows and columns" in low or "community" in low and "limit" in low:
        return Refused("licence_size", "xpress: " + text)
    if "licen" in low:
        return Refused("licence_unavailable", "xpress: " + text)
    return Refused("solver", "xpress: " + text)


def xpress_detect():
    xp = quiet_xpress()
    p = xp.problem()
    p.setOutputEnabled(False)
    version = getattr(xp, "__version__", None) or xp.getversion()
    for _ in range(5001):
        p.addVariable(ub=1)
    try:
        p.optimize()
        limited = False
    except xp.SolverError as e:
        r = xpress_refusal(e)
        if r.kind == "licence_unavailable":
            return {"version": version, "limited": False, "note": str(r)}
        if r.kind != "licence_size":
            raise r
        limited = True
    return {"version": version, "limited": limited}


def xpress_solve(path, o):
    xp = quiet_xpress()
    try:
        p = xp.problem()
        p.setOutputEnabled(bool(o["log"]))
        p.readProb(path)
        if o["time_limit"] is not None:
            p.controls.timelimit = o["time_limit"]
        if o["mip_gap"] is not None:
            p.controls.miprelstop = o["mip_gap"]
        p.controls.threads = o["threads"]
        set_options("xpress", o["extra"], p.setControl)
        p.optimize()
    except xp.SolverError as e:
        raise xpress_refusal(e)
    ss = p.attributes.solstatus
    mip = p.attributes.mipents > 0 or p.attributes.sets > 0
    S = xp.SolStatus
    if ss == S.OPTIMAL:
        status = "optimal"
    elif ss == S.INFEASIBLE:
        status = "infeasible"
    elif ss == S.UNBOUNDED:
        status = "unbounded"
    elif ss == S.FEASIBLE:
        status = "feasible"
    else:
        stop = p.attributes.stopstatus
        if stop == xp.StopType.TIMELIMIT:
            status = "time_limit"
        else:
            raise Refused("solver", "xpress stopped (solve status %s, stop %s) with no solution" % (p.attributes.solvestatus, stop))
    out = {"status": status, "objective": None, "values": {}, "duals": None}
    if status in ("optimal", "feasible"):
        out["objective"] = p.attributes.objval
        cols = p.attributes.cols
        names = p.getNameList(2, 0, cols - 1) if cols else []
        out["values"] = dict(zip(names, p.getSolution()))
        if o["duals"] and not mip and status == "optimal":
            rows = p.attributes.rows
            rnames = p.getNameList(1, 0, rows - 1) if rows else []
            out["duals"] = dict(zip(rnames, p.getDuals()))
    return out


# ---------------------------------------------------------------- highs
def highs_version(highspy):
    h = highspy.Highs()
    return "%d.%d.%d" % (h.versionMajor(), h.versionMinor(), h.versionPatch())


def highs_detect():
    import highspy

    return {"version": highs_version(highspy), "limited": False}


def highs_solve(path, o):
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", bool(o["log"]))
    if h.readModel(path) != highspy.HighsStatus.kOk:
        raise Refused("solver", "highs cannot read the model")
    if o["time_limit"] is not None:
        h.setOptionValue("time_limit", float(o["time_limit"]))
    if o["mip_gap"] is not None:
        h.setOptionValue("mip_rel_gap", float(o["mip_gap"]))
    h.setOptionValue("threads", int(o["threads"]))
    def setter(k, v):
        if h.setOptionValue(k, v) != highspy.HighsStatus.kOk:
            raise ValueError("refused")

    set_options("highs", o["extra"], setter)
    h.run()
    ms = h.getModelStatus()
    M = highspy.HighsModelStatus
    info = h.getInfo()
    has = info.primal_solution_status == 2
    if ms == M.kOptimal:
        status = "optimal"
    elif ms == M.kInfeasible:
        status = "infeasible"
    elif ms == M.kUnbounded:
        status = "unbounded"
    elif ms == M.kUnboundedOrInfeasible:
        h.setOptionValue("presolve", "off")
        h.run()
        ms = h.getModelStatus()
        status = {M.kInfeasible: "infeasible", M.kUnbounded: "unbounded"}.get(ms, "infeasible")
    elif has:
        status = "feasible"
    elif ms == M.kTimeLimit:
        status = "time_limit"
    else:
        raise Refused("solver", "highs stopped: %s" % h.modelStatusToString(ms))
    out = {"status": status, "objective": None, "values": {}, "duals": None}
    if status in ("optimal", "feasible"):
        lp = h.getLp()
        sol = h.getSolution()
        out["objective"] = info.objective_function_value
        out["values"] = dict(zip(lp.col_names_, sol.col_value))
        mip = any(int(t) != 0 for t in lp.integrality_) if len(lp.integrality_) else False
        if o["duals"] and not mip and status == "optimal" and sol.dual_valid:
            out["duals"] = dict(zip(lp.row_names_, sol.row_dual))
    return out


# ---------------------------------------------------------------- scip
def scip_detect():
    import pyscipopt

    m = pyscipopt.Model()
    return {"version": "%s" % m.version(), "limited": False}


def scip_solve(path, o):
    import pyscipopt

    m = pyscipopt.Model()
    if not o["log"]:
        m.hideOutput()
    m.readProblem(path)
    if o["time_limit"] is not None:
        m.setParam("limits/time", float(o["time_limit"]))
    if o["mip_gap"] is not None:
        m.setParam("limits/gap", float(o["mip_gap"]))
    set_options("scip", o["extra"], m.setParam)
    m.optimize()
    s = m.getStatus()
    has = m.getNSols() > 0
    if s == "optimal":
        status = "optimal"
    elif s == "infeasible":
        status = "infeasible"
    elif s == "unbounded":
        status = "unbounded"
    elif s == "inforunbd":
        m.freeTransform()
        m.setPresolve(pyscipopt.SCIP_PARAMSETTING.OFF)
        m.optimize()
        status = "unbounded" if m.getStatus() == "unbounded" else "infeasible"
    elif has:
        status = "feasible"
    elif s == "timelimit":
        status = "time_limit"
    else:
        raise Refused("solver", "scip stopped: %s" % s)
    out = {"status": status, "objective": None, "values": {}, "duals": None}
    if has and status in ("optimal", "feasible"):
        sol = m.getBestSol()
        out["objective"] = m.getSolObjVal(sol)
        out["values"] = {v.name: m.getSolVal(sol, v) for v in m.getVars()}
    return out


def main(argv):
    what = argv[0] if argv else ""
    if what == "detect":
        found = {}
        for name in argv[1:] or SOLVERS:
            try:
                __import__(MODULES[name])
            except ImportError as e:
                found[name] = {"missing": "no module %s (%s)" % (MODULES[name], e)}
                continue
            try:
                found[name] = globals()[name + "_detect"]()
            except Refused as e:
                found[name] = {"error": str(e), "kind": e.kind}
            except Exception as e:
                found[name] = {"error": "%s: %s" % (type(e).__name__, e), "kind": "solver"}
        answer(found)
        return 0
    if what == "solve" and len(argv) == 4:
        name, path, opts = argv[1], argv[2], json.loads(argv[3])
        try:
            answer(globals()[name + "_solve"](path, opts))
        except Refused as e:
            answer({"error": str(e), "kind": e.kind})
        except Exception as e:
            answer({"error": "%s: %s: %s" % (name, type(e).__name__, e), "kind": "solver"})
        return 0
    sys.stderr.write("usage: driver detect [SOLVER...] | driver solve SOLVER MODEL.mps OPTIONS_JSON\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

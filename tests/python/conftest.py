"""Real meshworker processes for the Python tests: a private namespace and CA
directory, mDNS on the loopback interface, two workers of two slots each.

`tests/python.rs` (run by `cargo test`) sets MESHSOLVE_BIN_DIR to the directory
of the freshly built `meshsolve` and `meshworker` binaries.
"""

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

BIN = os.environ.get("MESHSOLVE_BIN_DIR", "")


EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")


def market_split():
    """The rows of the shipped market-split instance (examples/marketsplit.lp):
    a list of (coefficients of x0..x35, right-hand side). Plain branch and
    bound does not finish it: a solve of it runs until its time limit."""
    rows = []
    with open(os.path.join(EXAMPLES, "marketsplit.lp")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("r") and ":" in line and "=" in line:
                lhs, rhs = line.split(":", 1)[1].split("=")
                coef = {}
                for term in lhs.replace("- ", "+ -").split("+"):
                    t = term.split()
                    if len(t) == 2 and t[1].startswith("x"):
                        coef[int(t[1][1:])] = int(t[0])
                rows.append(([coef.get(j, 0) for j in range(36)], int(rhs)))
    assert len(rows) == 4, "cannot read examples/marketsplit.lp"
    return rows


def run(args, env=None, timeout=60):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _solving(pid):
    """Whether a worker's child is alive and running a job (spare solver
    processes waiting for one keep their executable's name)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    return comm == "meshsolve-job" and stat.rsplit(")", 1)[1].split()[0] != "Z"


class Lab:
    def __init__(self, home, ns):
        self.home = str(home)
        self.ns = ns
        self.workers = {}
        self.env = dict(os.environ)
        self.env.update(
            MESHSOLVE_HOME=self.home,
            MESHSOLVE_NAMESPACE=ns,
            MESHSOLVE_INTERFACE="lo",
            PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
        )
        self.env.pop("PYRO_NS_HOSTNAME", None)
        self.env.pop("meshsolve_options", None)

    def start_worker(self, name, slots=2):
        log = open(os.path.join(self.home, f"{name}.log"), "w")
        p = subprocess.Popen(
            [os.path.join(BIN, "meshworker"), "--slots", str(slots), "--interface", "lo", "--name", name],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers[name] = p
        return p

    def listed(self):
        out = run([os.path.join(BIN, "meshsolve"), "workers", "--json", "--wait", "1s"], env=self.env)
        try:
            return json.loads(out.stdout or "[]")
        except ValueError:
            return []

    def wait_for(self, n, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            listed = self.listed()
            if len(listed) >= n:
                self.solvers = {s["name"] for w in listed for s in w["solvers"]}
                return
            time.sleep(0.2)
        raise AssertionError(f"{n} workers did not appear within {limit} s")

    def solver_children(self):
        """Solver processes (children of the workers) running a job now."""
        kids = []
        for p in self.workers.values():
            # Each thread has its own list: the solver is a child of whichever started it.
            for task in os.listdir(f"/proc/{p.pid}/task") if os.path.isdir(f"/proc/{p.pid}/task") else []:
                try:
                    with open(f"/proc/{p.pid}/task/{task}/children") as f:
                        kids += [int(k) for k in f.read().split() if _solving(int(k))]
                except OSError:
                    pass
        return kids

    def stop(self):
        for p in self.workers.values():
            p.terminate()
        for p in self.workers.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    assert BIN and os.path.exists(os.path.join(BIN, "meshsolve")), "MESHSOLVE_BIN_DIR must name the built binaries"
    lab = Lab(tmp_path_factory.mktemp("home"), "py" + uuid.uuid4().hex[:10])
    lab.start_worker(lab.ns + "-a")
    lab.start_worker(lab.ns + "-b")
    lab.wait_for(2)
    # Pyomo and PuLP start `meshsolve` as a child of this process: give it our namespace.
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in lab.env.items() if k.startswith("MESHSOLVE_") or k == "PATH"})
    os.environ.pop("PYRO_NS_HOSTNAME", None)
    os.environ.pop("meshsolve_options", None)
    yield lab
    os.environ.clear()
    os.environ.update(saved)
    lab.stop()


@pytest.fixture
def meshsolve_exe(lab):
    return shutil.which("meshsolve")

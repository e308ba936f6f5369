"""A pyomo model loaded once into HiGHS, whose per-period numbers are written as arrays.

Why not pyomo's own persistent updates: with mutable Params, pyomo's persistent HiGHS interface
re-evaluates every mutable expression and calls HiGHS once per coefficient on every solve
(``update_parameters``). On case39 that was most of the 19 ms of a balancing clear, and it grows
with the model (tens of ms on the 3,085-bus SimBench EHV grid), whereas HiGHS re-solves such an
LP from its previous basis in about a millisecond. So pyomo declares the model and translates it
into a ``highspy.Highs`` instance once (``set_instance``); afterwards the clearing writes the
changed column bounds, column costs and row bounds as numpy arrays with HiGHS's vectorised
calls, and reads primal values and duals as arrays. Only entries that differ from what HiGHS
already holds are written, which also keeps HiGHS's basis as valid as possible.

The pyomo model keeps its build-time numbers: it describes the structure, HiGHS holds the
period's numbers. This relies on two attributes of pyomo's persistent interface,
``_solver_model`` (the ``highspy.Highs``) and the var/constraint -> column/row maps; they are
checked when the model is loaded, so a pyomo upgrade that renames them fails loudly at build
time rather than clearing the wrong problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.solvers.highs import Highs
from scipy import sparse

from market_sim import kernels

#: A constraint matrix: dense, or scipy.sparse (array or matrix).
Matrix = np.ndarray | sparse.sparray | sparse.spmatrix


class LoadedModel:
    """A pyomo model translated into HiGHS once; numbers change through array writes.

    ``cols``/``rows`` turn pyomo variables/constraints into HiGHS column/row indices (do it
    once, at build time). ``set_*`` write only the entries that changed. ``run`` solves and
    returns ``None`` if optimal, else a message.
    """

    def __init__(self, model: pyo.ConcreteModel, options: dict[str, object] | None = None):
        opt = Highs()
        opt.set_instance(model)
        highs = getattr(opt, "_solver_model", None)
        var_map = getattr(opt, "_pyomo_var_to_solver_var_map", None)
        con_map = getattr(opt, "_pyomo_con_to_solver_con_map", None)
        if not isinstance(highs, highspy.Highs) or var_map is None or con_map is None:
            raise RuntimeError(
                "pyomo's HiGHS interface changed: no _solver_model / variable and constraint "
                "maps; market_sim.markets.persistent needs updating"
            )
        self.model = model
        self.highs: highspy.Highs = highs
        self._opt = opt  # keeps pyomo's translation (and its maps) alive
        self._var_map = var_map
        self._con_map = con_map
        kernels.one_thread_highs(self.highs, **(options or {}))
        lp = self.highs.getLp()
        self._col_lower = np.array(lp.col_lower_, dtype=float)
        self._col_upper = np.array(lp.col_upper_, dtype=float)
        self._col_cost = np.array(lp.col_cost_, dtype=float)
        self._row_lower = np.array(lp.row_lower_, dtype=float)
        self._row_upper = np.array(lp.row_upper_, dtype=float)
        #: the LP as loaded, for :meth:`reset`
        self._options = dict(options or {})
        self._loaded_lp = lp
        self._solution: highspy.HighsSolution | None = None
        #: fields of ``_solution`` as arrays (converted once per solve), and which solution
        self._arrays: dict[str, np.ndarray] = {}
        self._arrays_of: highspy.HighsSolution | None = None

    @property
    def n_cols(self) -> int:
        return len(self._col_lower)

    @property
    def n_rows(self) -> int:
        return len(self._row_lower)

    def cols(self, variables: Iterable[pyo.Var]) -> np.ndarray:
        """HiGHS column of each (unfixed, used) pyomo variable; KeyError if it has none."""
        return np.fromiter((self._var_map[id(v)] for v in variables), dtype=np.int32)

    def rows(self, constraints: Iterable[pyo.Constraint]) -> np.ndarray:
        """HiGHS row of each active pyomo constraint."""
        return np.fromiter((self._con_map[c] for c in constraints), dtype=np.int32)

    # ---- writes ----------------------------------------------------------------------------

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> int:
        """Write column bounds where they changed; returns how many columns were written."""
        changed = (self._col_lower[cols] != lower) | (self._col_upper[cols] != upper)
        idx = cols[changed]
        if len(idx):
            lo, hi = np.asarray(lower, float)[changed], np.asarray(upper, float)[changed]
            self.highs.changeColsBounds(len(idx), idx, lo, hi)
            self._col_lower[idx], self._col_upper[idx] = lo, hi
        return len(idx)

    def set_col_costs(self, cols: np.ndarray, cost: np.ndarray) -> int:
        """Write linear objective coefficients where they changed."""
        changed = self._col_cost[cols] != cost
        idx = cols[changed]
        if len(idx):
            c = np.asarray(cost, float)[changed]
            self.highs.changeColsCost(len(idx), idx, c)
            self._col_cost[idx] = c
        return len(idx)

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> int:
        """Write row bounds where they changed (``lower == upper`` for an equality)."""
        changed = (self._row_lower[rows] != lower) | (self._row_upper[rows] != upper)
        idx = rows[changed]
        if len(idx):
            lo, hi = np.asarray(lower, float)[changed], np.asarray(upper, float)[changed]
            self.highs.changeRowsBounds(len(idx), idx, lo, hi)
            self._row_lower[idx], self._row_upper[idx] = lo, hi
        return len(idx)

    @contextmanager
    def extra_rows(self, matrix: Matrix, cols: np.ndarray, upper: np.ndarray):
        """Rows ``matrix @ x[cols] <= upper`` present for the solves inside the block only.

        ``matrix`` is dense or scipy.sparse; a sparse one is never densified (distribution
        rows over thousands of bids are mostly zeros). They are appended after the model's own
        rows (whose indices stay valid) and deleted on exit, so the built model is left as it
        was.
        """
        rows = _without_zeros(matrix)
        n_rows = len(upper)
        first = self.highs.getNumRow()
        if n_rows:
            if rows.shape != (n_rows, len(cols)):
                raise ValueError(f"extra rows are {rows.shape}, expected ({n_rows}, {len(cols)})")
            self.highs.addRows(
                n_rows,
                np.full(n_rows, -highspy.kHighsInf),
                np.asarray(upper, dtype=float),
                rows.nnz,
                rows.indptr[:-1].astype(np.int32),
                np.asarray(cols)[rows.indices].astype(np.int32),
                rows.data,
            )
        try:
            yield
        finally:
            if n_rows:
                self._delete_rows(first, n_rows)

    def _delete_rows(self, first: int, n_rows: int) -> None:
        """Delete ``n_rows`` rows from ``first`` on, keeping the basis of the last solve.

        Where a deleted row was binding (its slack nonbasic), HiGHS marks the basis invalid,
        though it keeps every remaining status, with more basic variables than rows: the
        next solve then started from scratch, presolve included (two thirds of case39's
        balancing solves, 1.7 against 1.1 ms). Given back as an alien basis, HiGHS makes a
        basis of those statuses (the surplus made nonbasic), and the next solve starts from
        it. A basis that was not valid before stays as it was.
        """
        valid = self.highs.getBasis().valid
        self.highs.deleteRows(n_rows, np.arange(first, first + n_rows, dtype=np.int32))
        basis = self.highs.getBasis()
        if valid and not basis.valid:
            basis.alien = True
            self.highs.setBasis(basis)

    # ---- solve and read --------------------------------------------------------------------

    def reset(self) -> None:
        """A new HiGHS instance holding the LP as it was loaded: what loading the model again
        gives (a kept model taken again instead of a new one), without pyomo's translation.

        Not the same instance with its numbers written back and its basis cleared: HiGHS
        keeps more of an earlier solve than its basis, and the next solves differ in the
        last bits.
        """
        self.highs = kernels.one_thread_highs(**self._options)
        self.highs.passModel(self._loaded_lp)
        lp = self._loaded_lp
        self._col_lower = np.array(lp.col_lower_, dtype=float)
        self._col_upper = np.array(lp.col_upper_, dtype=float)
        self._col_cost = np.array(lp.col_cost_, dtype=float)
        self._row_lower = np.array(lp.row_lower_, dtype=float)
        self._row_upper = np.array(lp.row_upper_, dtype=float)
        self._solution = None

    def forget_basis(self) -> None:
        """Solve the next time from scratch, like a freshly loaded model (a checkpoint)."""
        self.highs.clearSolver()
        self._solution = None

    def run(self) -> str | None:
        """Solve from the current basis. ``None`` if optimal, else why not.

        HiGHS reports its failures (a solve error included) by its status; a C++ exception
        of the solver reaches Python as ``RuntimeError`` (pybind11) and is reported too. Any
        other exception is a bug and propagates.
        """
        self._solution = None
        try:
            with kernels.timed("solves"):
                self.highs.run()
            status = self.highs.getModelStatus()
            if status == highspy.HighsModelStatus.kUnknown:
                status = self._run_without_presolve()
        except RuntimeError as err:  # the solver's own failure
            return f"solver error: RuntimeError: {err}"
        if status != highspy.HighsModelStatus.kOptimal:
            return f"not solved to optimality: {self.highs.modelStatusToString(status)}"
        self._solution = self.highs.getSolution()
        return None

    def _run_without_presolve(self) -> highspy.HighsModelStatus:
        """Solve again from scratch without presolve: the status of a solve that ended "Unknown".

        HiGHS ends a solve "Unknown" when the LP its presolve reduced is not solved to
        optimality (infeasible, or numerically troubled: SimBench EHV's susceptances span 1e2
        to 1e7 p.u.) and postsolve cannot tell; the unreduced LP gets a definite status (on
        SimBench EHV an infeasible schedule is then "Infeasible", and balancing clearings that
        ended "Unknown" are solved). The basis is dropped, so that what follows does not depend
        on how this solve ended.
        """
        _, presolve = self.highs.getOptionValue("presolve")
        self.highs.clearSolver()
        self.highs.setOptionValue("presolve", "off")
        try:
            with kernels.timed("solves"):
                self.highs.run()
        finally:
            self.highs.setOptionValue("presolve", presolve)
        return self.highs.getModelStatus()

    def values(self) -> np.ndarray:
        """Primal value of every column (after a successful ``run``; read-only)."""
        return self._array("col_value")

    def duals(self) -> np.ndarray:
        """Dual of every row, as pyomo reports it: d objective / d row bound (minimisation;
        read-only)."""
        return self._array("row_dual")

    def _array(self, name: str) -> np.ndarray:
        """A field of the solution as a read-only array, converted from HiGHS's list once per
        solve (a clearing reads the values more than once), by ``np.fromiter``: the same
        floats, converted a third faster than by ``np.asarray`` (18 against 27 us for a list
        of 1,300)."""
        solution = self._checked()
        if self._arrays_of is not solution:
            self._arrays, self._arrays_of = {}, solution
        if name not in self._arrays:
            values = getattr(solution, name)
            array = np.fromiter(values, dtype=float, count=len(values))
            array.flags.writeable = False
            self._arrays[name] = array
        return self._arrays[name]

    def objective(self) -> float:
        """The objective's value (after a successful ``run``): the info's
        ``objective_function_value``, read alone (``getInfo`` copies every field of the info,
        5 of the 5.3 us of a call)."""
        self._checked()
        return self.highs.getObjectiveValue()

    def _checked(self) -> highspy.HighsSolution:
        if self._solution is None:
            raise RuntimeError("no optimal solution: run() first and check its result")
        return self._solution


def _without_zeros(matrix: Matrix) -> sparse.csr_array:
    """``matrix`` as CSR of floats without stored zeros, each row's entries by column: the
    matrix itself where it is one already (the clearings' rows are), else such a copy."""
    if _is_clean_csr(matrix):
        return matrix
    rows = sparse.csr_array(matrix, dtype=float, copy=True)
    rows.eliminate_zeros()
    rows.sort_indices()
    return rows


def _is_clean_csr(matrix: Matrix) -> bool:
    """Whether ``matrix`` is CSR of floats, each row's entries by column, without stored zeros."""
    if not isinstance(matrix, sparse.csr_array | sparse.csr_matrix):
        return False
    data = matrix.data
    return data.dtype == float and matrix.has_sorted_indices and np.all(data != 0)

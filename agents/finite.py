"""Exact Nash equilibria of finite games of the Λ-game (empathetic payoffs U = Λ u, docs/theory.md#empathy, docs/theory.md#static-games).

Two players: support enumeration (every equilibrium of a nondegenerate game, by exact linear solves of the
indifference conditions), vertex enumeration of the best-response polytopes (every *extreme* equilibrium,
degenerate games included) and Lemke–Howson (one equilibrium, complementary pivoting). n players, our own
(pygambit 16.7 is source-only and did not build here within 3 minutes): support enumeration whose
indifference system (polynomial for n ≥ 3) is solved by scipy root-finding, and the logit homotopy (the
principal branch of quantal-response equilibria traced to λ → ∞, then polished by Newton on its supports).
``FINITE_SOLVERS`` names them; ``nash_equilibria`` picks a default by game size (``default_solver``) and
applies the selection rule (``select``). Learned dynamics (``fictitious_play``, ``logit_play``,
``LEARNED_DYNAMICS``) are kept as a second, labelled method and report the last iterate and the time average.

Payoffs are maximised here, as a tensor U [n, m_1, …, m_n]; a profile is a list of probability vectors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import root

from control.errors import ValidationError, choice, number

Profile = list[np.ndarray]
SELECTIONS = ("welfare", "first", "logit")
ENUM_LIMIT = 5000  # support pairs / polytope bases above which the 2-player default is Lemke–Howson
NPLAYER_LIMIT = 2000  # support profiles above which n-player enumeration is refused
NPLAYER_DEFAULT = 100  # support profiles above which the n-player default is the logit homotopy


@dataclass(frozen=True)
class FiniteEquilibria:
    """Equilibria of a finite game: ``profiles`` (the selected one first), how they were found and how many.

    ``complete``: the list holds every equilibrium (support enumeration of a nondegenerate game) or every
    extreme equilibrium (vertex enumeration, degenerate games); False for one-equilibrium methods and for
    root-finding. ``regrets[k]``: the largest gain of a pure deviation at profile k (in Λ-payoffs).
    """

    profiles: list[Profile]
    method: str
    complete: bool
    degenerate: bool = False
    regrets: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def profile(self) -> Profile:
        """The selected equilibrium."""
        return self.profiles[0]

    @property
    def count(self) -> int:
        """How many equilibria were found."""
        return len(self.profiles)


@dataclass(frozen=True)
class LearnedPlay:
    """The outcome of learned dynamics on a finite game: the last iterate and the time average, with regrets."""

    method: str
    last: Profile
    average: Profile
    regret_last: float
    regret_average: float
    iterations: int
    history: np.ndarray  # [iterations] the time average's largest regret
    values: np.ndarray  # [iterations, n] the time average's expected (Λ-)payoffs

    @property
    def profile(self) -> Profile:
        """The time average (the iterate the learning theory speaks of: it converges where the last cycles)."""
        return self.average


# ---- payoffs and regrets ------------------------------------------------------------------------
def lambda_payoffs(payoffs: np.ndarray, Lambda: np.ndarray | None = None) -> np.ndarray:
    """Empathetic payoffs U_i = Σ_k λ_ik u_k [n, m_1, …, m_n] (docs/theory.md#empathy); Λ = None is the material game."""
    u = np.asarray(payoffs, dtype=float)
    if u.ndim < 2 or u.shape[0] != u.ndim - 1:
        raise ValidationError("payoffs", "a tensor [n, m_1, ..., m_n]", f"shape {u.shape}")
    if not np.isfinite(u).all():
        raise ValidationError("payoffs", "finite numbers", "NaN or inf")
    if Lambda is None:
        return u
    L = np.asarray(Lambda, dtype=float)
    if L.shape != (u.shape[0], u.shape[0]):
        raise ValidationError("Lambda", f"a {u.shape[0]}x{u.shape[0]} matrix", f"shape {L.shape}")
    return np.tensordot(L, u, axes=([1], [0]))


def deviation_payoffs(U: np.ndarray, profile: Sequence[np.ndarray], i: int) -> np.ndarray:
    """Player i's payoff of each pure action against the others' mixed strategies [m_i]."""
    T = U[i]
    for j in range(U.shape[0] - 1, -1, -1):
        if j != i:
            T = np.tensordot(T, np.asarray(profile[j], dtype=float), axes=([j], [0]))
    return T


def regrets(U: np.ndarray, profile: Sequence[np.ndarray]) -> np.ndarray:
    """Per-player gain of the best pure deviation, max_a U_i(a, x_−i) − U_i(x) ≥ 0 [n] (0 at a Nash equilibrium)."""
    out = []
    for i in range(U.shape[0]):
        v = deviation_payoffs(U, profile, i)
        out.append(max(0.0, float(v.max() - v @ np.asarray(profile[i], dtype=float))))
    return np.array(out)


def expected_payoffs(U: np.ndarray, profile: Sequence[np.ndarray]) -> np.ndarray:
    """E_{a∼x}[U_i(a)] for every player [n]."""
    return np.array([deviation_payoffs(U, profile, i) @ profile[i] for i in range(U.shape[0])])


def _scale(U: np.ndarray) -> float:
    return max(1.0, float(np.abs(U).max()))


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.where(np.abs(x) < 1e-13, 0.0, np.maximum(x, 0.0))
    return x / x.sum()


def _key(profile: Profile, digits: int = 8) -> tuple:
    return tuple(np.round(np.concatenate(profile), digits).tolist())


def _dedupe(profiles: list[Profile]) -> list[Profile]:
    seen, out = set(), []
    for p in profiles:
        k = _key(p)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


def _check_two(U: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    if U.shape[0] != 2:
        raise ValidationError(
            "payoffs",
            f"a two-player game for {method}",
            f"{U.shape[0]} players",
            reason="use method='auto' for n players",
        )
    return U[0], U[1]


# ---- two players: support enumeration ----------------------------------------------------------
def _indifferent(M: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Solve M z = w 1, Σ z = 1 exactly (k+1 linear equations); None when singular."""
    k = M.shape[1]
    S = np.zeros((M.shape[0] + 1, k + 1))
    S[:-1, :k], S[:-1, k], S[-1, :k] = M, -1.0, 1.0
    rhs = np.zeros(M.shape[0] + 1)
    rhs[-1] = 1.0
    if M.shape[0] != k or np.linalg.cond(S) > 1e12:
        return None
    z = np.linalg.solve(S, rhs)
    return z[:k], float(z[k])


def support_enumeration(U: np.ndarray, *, tol: float = 1e-9) -> FiniteEquilibria:
    """All equilibria of a nondegenerate bimatrix game: for every pair of equal-size supports (I, J), solve the
    indifference equations exactly and keep the nonnegative solutions with no better pure reply.

    A sign of degeneracy (a singular system, a best-reply tie outside a support, a pure strategy with several
    pure best replies) hands over to ``vertex_enumeration`` when it is affordable (every extreme equilibrium).
    """
    A, B = _check_two(U, "support_enumeration")
    m, n = A.shape
    t = tol * _scale(U)
    degenerate = _pure_ties(A, B, t)
    found: list[Profile] = []
    for k in range(1, min(m, n) + 1):
        for I in itertools.combinations(range(m), k):
            for J in itertools.combinations(range(n), k):
                sy = _indifferent(A[np.ix_(I, J)])
                sx = _indifferent(B[np.ix_(I, J)].T)
                if sy is None or sx is None:
                    degenerate = True
                    continue
                (yJ, u), (xI, v) = sy, sx
                if yJ.min() < -t or xI.min() < -t:
                    continue
                x, y = np.zeros(m), np.zeros(n)
                x[list(I)], y[list(J)] = xI, yJ
                ay, bx = A @ y, B.T @ x
                if ay.max() > u + t or bx.max() > v + t:
                    continue
                out_i = np.setdiff1d(np.arange(m), I)
                out_j = np.setdiff1d(np.arange(n), J)
                if (
                    xI.min() <= t
                    or yJ.min() <= t
                    or (out_i.size and ay[out_i].max() > u - t)
                    or (out_j.size and bx[out_j].max() > v - t)
                ):
                    degenerate = True
                found.append([_clean(x), _clean(y)])
    if degenerate and math.comb(m + n, m) <= ENUM_LIMIT:
        ve = vertex_enumeration(U, tol=tol)
        return FiniteEquilibria(
            ve.profiles,
            "vertex_enumeration",
            True,
            True,
            ve.regrets,
            "degenerate game: support enumeration handed over to vertex enumeration (every extreme "
            "equilibrium; the equilibrium set may contain segments between them)",
        )
    found = _dedupe(found)
    note = "degenerate game: equilibria with unequal supports may be missing" if degenerate else ""
    return FiniteEquilibria(
        found,
        "support_enumeration",
        not degenerate,
        degenerate,
        [float(regrets(U, p).max()) for p in found],
        note,
    )


def _pure_ties(A: np.ndarray, B: np.ndarray, t: float) -> bool:
    """True when some pure strategy has several pure best replies (a degenerate game)."""
    ca = np.sort(A, axis=0)  # row player's replies to each column
    cb = np.sort(B, axis=1)  # column player's replies to each row
    tie_a = A.shape[0] > 1 and bool((ca[-1] - ca[-2] <= t).any())
    tie_b = B.shape[1] > 1 and bool((cb[:, -1] - cb[:, -2] <= t).any())
    return tie_a or tie_b


# ---- two players: vertex enumeration (degenerate games) -----------------------------------------
def _vertices(G: np.ndarray, h: np.ndarray, d: int, t: float) -> list[tuple[np.ndarray, frozenset]]:
    """Nonzero vertices of {z : G z ≤ h} in R^d with their labels (indices of the tight constraints)."""
    out, seen = [], set()
    for S in itertools.combinations(range(G.shape[0]), d):
        M = G[list(S)]
        if abs(np.linalg.det(M)) < 1e-12:
            continue
        z = np.linalg.solve(M, h[list(S)])
        if (G @ z - h).max() > t or np.abs(z).max() < t:
            continue
        k = tuple(np.round(z, 9).tolist())
        if k in seen:
            continue
        seen.add(k)
        out.append((z, frozenset(np.flatnonzero(np.abs(G @ z - h) <= t).tolist())))
    return out


def vertex_enumeration(U: np.ndarray, *, tol: float = 1e-9) -> FiniteEquilibria:
    """Every extreme equilibrium of a bimatrix game, degenerate or not: the completely labelled vertex pairs of
    the best-response polytopes P = {x ≥ 0 : Bᵀx ≤ 1}, Q = {y ≥ 0 : Ay ≤ 1} (payoffs shifted positive).
    """
    A, B = _check_two(U, "vertex_enumeration")
    m, n = A.shape
    Ap, Bp = A - A.min() + 1.0, B - B.min() + 1.0
    t = tol * max(1.0, float(max(Ap.max(), Bp.max())))
    # labels 0..m−1: row strategies, m..m+n−1: column strategies
    P = _vertices(np.vstack([-np.eye(m), Bp.T]), np.r_[np.zeros(m), np.ones(n)], m, t)
    Qv = _vertices(np.vstack([Ap, -np.eye(n)]), np.r_[np.ones(m), np.zeros(n)], n, t)
    allL = frozenset(range(m + n))
    found = [[_clean(x), _clean(y)] for x, lx in P for y, ly in Qv if lx | ly == allL]
    found = _dedupe(found)
    return FiniteEquilibria(
        found, "vertex_enumeration", True, False, [float(regrets(U, p).max()) for p in found]
    )


# ---- two players: Lemke–Howson -----------------------------------------------------------------
def _pivot(T: np.ndarray, basis: list[int], col: int, slack0: int, k: int) -> int:
    """Pivot ``col`` into tableau T (rows: basic variables; last column: rhs) by the lexicographic minimum
    ratio test on (rhs, inverse-basis columns); returns the label that leaves."""
    rows = np.flatnonzero(T[:, col] > 1e-12)
    if rows.size == 0:
        raise ArithmeticError("Lemke-Howson: unbounded ray (payoffs not shifted positive?)")
    keys = np.column_stack([T[rows, -1], T[rows, slack0 : slack0 + k]]) / T[rows, col][:, None]
    r = rows[np.lexsort(keys.T[::-1])[0]]
    T[r] /= T[r, col]
    for i in range(T.shape[0]):
        if i != r and T[i, col] != 0.0:
            T[i] -= T[i, col] * T[r]
    leaving, basis[r] = basis[r], col
    return leaving


def lemke_howson(U: np.ndarray, *, label: int = 0, max_pivots: int = 10_000) -> FiniteEquilibria:
    """One equilibrium of a bimatrix game by Lemke–Howson from the artificial equilibrium, dropping ``label``
    (0..m−1: a row strategy, m..m+n−1: a column strategy); lexicographic pivoting handles degeneracy.
    The support found is then re-solved exactly (indifference equations) when the system is square.
    """
    A, B = _check_two(U, "lemke_howson")
    m, n = A.shape
    number("label", label, low=0, high=m + n - 1, integer=True)
    Ap, Bp = A - A.min() + 1.0, B - B.min() + 1.0
    # columns are labels: TX for P (x_0..x_{m−1}, s_0..s_{n−1}), TY for Q (r_0..r_{m−1}, y_0..y_{n−1})
    TX = np.hstack([Bp.T, np.eye(n), np.ones((n, 1))])
    TY = np.hstack([np.eye(m), Ap, np.ones((m, 1))])
    bX, bY = list(range(m, m + n)), list(range(m))
    entering, in_x = label, label < m
    for _ in range(max_pivots):
        if in_x:
            leaving = _pivot(TX, bX, entering, m, n)
        else:
            leaving = _pivot(TY, bY, entering, 0, m)
        if leaving == label:
            break
        entering, in_x = leaving, not in_x
    else:
        raise ArithmeticError(f"Lemke-Howson: no equilibrium after {max_pivots} pivots")
    x, y = np.zeros(m), np.zeros(n)
    for r, b in enumerate(bX):
        if b < m:
            x[b] = TX[r, -1]
    for r, b in enumerate(bY):
        if b >= m:
            y[b - m] = TY[r, -1]
    prof = _polish([_clean(x), _clean(y)], A, B)
    return FiniteEquilibria(
        [prof], f"lemke_howson(label={label})", False, False, [float(regrets(U, prof).max())]
    )


def _polish(prof: Profile, A: np.ndarray, B: np.ndarray) -> Profile:
    """Re-solve the indifference equations on the profile's supports (exact up to rounding) when square."""
    I, J = np.flatnonzero(prof[0] > 1e-12), np.flatnonzero(prof[1] > 1e-12)
    sy, sx = _indifferent(A[np.ix_(I, J)]), _indifferent(B[np.ix_(I, J)].T)
    if sy is None or sx is None or sy[0].min() < 0 or sx[0].min() < 0:
        return prof
    x, y = np.zeros(A.shape[0]), np.zeros(A.shape[1])
    x[I], y[J] = sx[0], sy[0]
    new = [_clean(x), _clean(y)]
    U = np.stack([A, B])
    return new if regrets(U, new).max() <= regrets(U, prof).max() + 1e-12 else prof


# ---- n players ----------------------------------------------------------------------------------
def _cross(U: np.ndarray, xs: Profile, i: int, j: int) -> np.ndarray:
    """U_i contracted with every x_k, k ∉ {i, j}: the [m_i, m_j] matrix of player i's payoffs against j."""
    T = U[i]
    for k in range(U.shape[0] - 1, -1, -1):
        if k not in (i, j):
            T = np.tensordot(T, xs[k], axes=([k], [0]))
    return T if i < j else T.T


def _support_system(U: np.ndarray, S: tuple[tuple[int, ...], ...]):
    """(F, J, unpack): F(z) = 0 makes every player indifferent (value v_i) on its support S_i and its
    probabilities sum to 1; z = (x_1[S_1], …, x_n[S_n], v); J is F's Jacobian."""
    n = U.shape[0]
    sizes = [len(s) for s in S]
    at = np.r_[0, np.cumsum(sizes)]
    rows = np.r_[0, np.cumsum([k + 1 for k in sizes])]
    idx = [list(s) for s in S]

    def unpack(z: np.ndarray) -> tuple[Profile, np.ndarray]:
        xs = []
        for i in range(n):
            x = np.zeros(U.shape[1 + i])
            x[idx[i]] = z[at[i] : at[i + 1]]
            xs.append(x)
        return xs, z[at[-1] :]

    def parts(z: np.ndarray):
        xs, v = unpack(z)
        j0 = [1 if i == 0 else 0 for i in range(n)]
        M = {(i, j): _cross(U, xs, i, j) for i in range(n) for j in range(n) if j != i}
        return xs, v, M, j0

    def F(z: np.ndarray) -> np.ndarray:
        xs, v, M, j0 = parts(z)
        out = []
        for i in range(n):
            out.append((M[i, j0[i]] @ xs[j0[i]])[idx[i]] - v[i])
            out.append([xs[i].sum() - 1.0])
        return np.concatenate(out)

    def J(z: np.ndarray) -> np.ndarray:
        xs, _, M, _ = parts(z)
        D = np.zeros((rows[-1], z.size))
        for i in range(n):
            r = rows[i]
            for j in range(n):
                if j != i:
                    D[r : r + sizes[i], at[j] : at[j + 1]] = M[i, j][np.ix_(idx[i], idx[j])]
            D[r : r + sizes[i], at[-1] + i] = -1.0
            D[r + sizes[i], at[i] : at[i + 1]] = 1.0
        return D

    return F, J, unpack


def _dominated(U: np.ndarray, S: tuple[tuple[int, ...], ...]) -> bool:
    """True when some a ∈ S_i is strictly beaten by another action of i against every pure profile of
    S_−i (conditional dominance, Porter, Nudelman & Shoham 2004): no equilibrium has these supports."""
    n = U.shape[0]
    for i in range(n):
        R = U[i][np.ix_(*[range(U.shape[1 + i]) if k == i else S[k] for k in range(n)])]
        R = np.moveaxis(R, i, 0).reshape(U.shape[1 + i], -1)
        for a in S[i]:
            if ((R > R[a]).all(axis=1)).any():
                return True
    return False


def nplayer_support_enumeration(
    U: np.ndarray, *, starts: int = 6, seed: int = 0, tol: float = 1e-9, first: bool = False
) -> FiniteEquilibria:
    """Equilibria of an n-player game by support enumeration (Porter, Nudelman & Shoham 2004): for each support
    profile (smallest first) not ruled out by conditional dominance, the indifference conditions (a polynomial
    system) are solved by scipy's ``root`` with its exact Jacobian, from the uniform start then up to
    ``starts`` − 1 random ones, keeping the first nonnegative solution with no better pure deviation.
    One equilibrium per support profile at most, so the list is not declared complete.
    """
    number("starts", starts, low=1, integer=True)
    n, ms = U.shape[0], list(U.shape[1:])
    subsets = [
        [c for k in range(1, m + 1) for c in itertools.combinations(range(m), k)] for m in ms
    ]
    total = math.prod(len(s) for s in subsets)
    if total > NPLAYER_LIMIT:
        raise ValidationError(
            "payoffs",
            f"at most {NPLAYER_LIMIT} support profiles for n-player enumeration",
            total,
            reason="use a learned method (fictitious_play, logit) for larger n-player games",
        )
    t = tol * _scale(U)
    rng = np.random.default_rng(seed)
    profiles = sorted(itertools.product(*subsets), key=lambda S: (sum(map(len, S)), S))
    found: list[Profile] = []
    for S in profiles:
        if _dominated(U, S):
            continue
        if all(len(s) == 1 for s in S):
            xs = [np.eye(m)[s[0]] for m, s in zip(ms, S, strict=True)]
            if regrets(U, xs).max() <= t:
                found.append(xs)
        else:
            F, J, unpack = _support_system(U, S)
            for k in range(starts):
                z0 = [
                    rng.dirichlet(np.ones(len(s))) if k else np.full(len(s), 1 / len(s)) for s in S
                ]
                xs0 = unpack(np.r_[np.concatenate(z0), np.zeros(n)])[0]
                v0 = [deviation_payoffs(U, xs0, i)[list(S[i])].mean() for i in range(n)]
                sol = root(
                    F, np.r_[np.concatenate(z0), v0], jac=J, method="hybr", options={"xtol": 1e-13}
                )
                xs, _ = unpack(sol.x)
                if np.abs(F(sol.x)).max() > t or min(x.min() for x in xs) < -t:
                    continue
                xs = [_clean(x) for x in xs]
                if regrets(U, xs).max() <= t:
                    found.append(xs)
                    break
        if first and found:
            break
    found = _dedupe(found)
    return FiniteEquilibria(
        found,
        "nplayer_support_enumeration",
        False,
        False,
        [float(regrets(U, p).max()) for p in found],
        "n-player support enumeration with root-finding: some equilibria may be missing",
    )


def _qre_system(U: np.ndarray):
    """(H, JH, sigma) of the logit QRE correspondence in log-probabilities w and λ (Turocy 2005):
    w_ia − w_i0 = λ (D_i[a] − D_i[0]) for a ≥ 1 and Σ_a e^{w_ia} = 1, for every player i."""
    n, ms = U.shape[0], list(U.shape[1:])
    at = np.r_[0, np.cumsum(ms)]

    def sigma(y: np.ndarray) -> Profile:
        return [np.exp(y[at[i] : at[i + 1]]) for i in range(n)]

    def H(y: np.ndarray) -> np.ndarray:
        xs, lam, out = sigma(y), y[-1], []
        for i in range(n):
            w, D = y[at[i] : at[i + 1]], deviation_payoffs(U, xs, i)
            out.append((w[1:] - w[0]) - lam * (D[1:] - D[0]))
            out.append([xs[i].sum() - 1.0])
        return np.concatenate(out)

    def JH(y: np.ndarray) -> np.ndarray:
        xs, lam = sigma(y), y[-1]
        Jm = np.zeros((at[-1], at[-1] + 1))
        for i in range(n):
            r, m = at[i], ms[i]
            Jm[r : r + m - 1, r + 1 : r + m] = np.eye(m - 1)
            Jm[r : r + m - 1, r] = -1.0
            Jm[r + m - 1, r : r + m] = xs[i]
            for j in range(n):
                if j != i:
                    M = _cross(U, xs, i, j)
                    Jm[r : r + m - 1, at[j] : at[j + 1]] = -lam * (M[1:] - M[0]) * xs[j]
            D = deviation_payoffs(U, xs, i)
            Jm[r : r + m - 1, -1] = -(D[1:] - D[0])
        return Jm

    return H, JH, sigma


def _polish_support(U: np.ndarray, xs: Profile, t: float) -> Profile | None:
    """An exact equilibrium near ``xs``: Newton on the indifference system of its (thresholded) supports."""
    for cut in (1e-8, 1e-5, 1e-3, 1e-2):
        S = tuple(tuple(np.flatnonzero(x > cut).tolist()) for x in xs)
        F, J, unpack = _support_system(U, S)
        z0 = np.concatenate([x[list(s)] for x, s in zip(xs, S, strict=True)])
        v0 = [deviation_payoffs(U, xs, i)[list(S[i])].mean() for i in range(U.shape[0])]
        sol = root(F, np.r_[z0, v0], jac=J, method="hybr", options={"xtol": 1e-14})
        ys, _ = unpack(sol.x)
        if np.abs(F(sol.x)).max() <= t and min(y.min() for y in ys) >= -t:
            ys = [_clean(y) for y in ys]
            if regrets(U, ys).max() <= t:
                return ys
    return None


def _correct(H, JH, z: np.ndarray, tan: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Newton (chord) back onto H = 0 in the hyperplane through z orthogonal to ``tan``: (point, iterations)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        J = np.vstack([JH(z), tan])  # chord method: one Jacobian per step
        for k in range(10):
            r = np.r_[H(z), 0.0]
            if not np.isfinite(r).all():
                return None, k
            if np.abs(r).max() < 1e-11:
                return z, k
            try:
                z = z - np.linalg.solve(J, r)
            except np.linalg.LinAlgError:
                return None, k
        ok = np.isfinite(z).all() and np.abs(H(z)).max() < 1e-9
    return (z if ok else None), 10


def logit_homotopy(
    U: np.ndarray, *, lam_end: float = 1e4, max_steps: int = 5000, tol: float = 1e-9
) -> FiniteEquilibria:
    """One equilibrium of an n-player game by tracing the principal branch of logit quantal-response
    equilibria from the centroid (λ = 0) towards λ → ∞ (McKelvey & Palfrey 1995; Turocy 2005), with an
    arc-length predictor–corrector in (log σ, λ); its end is polished into an exact equilibrium by Newton
    on its supports. λ is in units of the payoff range; generic games' branches end at one equilibrium
    (the logit selection), which is what this returns.
    """
    number("lam_end", lam_end, low=0.0, strict_low=True)
    number("max_steps", max_steps, low=1, integer=True)
    Un = U / (float(np.ptp(U)) or 1.0)
    H, JH, sigma = _qre_system(Un)
    y = np.r_[np.concatenate([np.full(m, -math.log(m)) for m in U.shape[1:]]), 0.0]
    t_prev, h = None, 0.1
    for _ in range(max_steps):
        if y[-1] >= lam_end:
            break
        J = JH(y)
        tan = np.linalg.svd(J)[2][-1]
        if t_prev is None:
            tan = tan if tan[-1] > 0 else -tan
        elif tan @ t_prev < 0:
            tan = -tan
        while True:
            z, k = _correct(H, JH, y + h * tan, tan)
            if z is not None and np.linalg.norm(z - y) < 3 * h:
                break
            h /= 2
            if h < 1e-12:
                raise ArithmeticError("logit homotopy: the corrector failed (a bifurcation?)")
        y, t_prev = z, tan
        h = min(h * (1.5 if k <= 3 else 1.0), max(1.0, 0.5 * y[-1]))
    t = tol * _scale(U)
    xs = [_clean(x) for x in sigma(y)]
    exact = _polish_support(U, xs, t)
    note = (
        "" if exact is not None else f"polishing failed: the QRE at lambda={y[-1]:.3g} is returned"
    )
    prof = exact if exact is not None else xs
    return FiniteEquilibria(
        [prof], "logit_homotopy", False, False, [float(regrets(U, prof).max())], note
    )


FINITE_SOLVERS: dict[str, Callable[..., FiniteEquilibria]] = {
    "support_enumeration": support_enumeration,
    "vertex_enumeration": vertex_enumeration,
    "lemke_howson": lemke_howson,
    "nplayer_support_enumeration": nplayer_support_enumeration,
    "logit_homotopy": logit_homotopy,
}


def default_solver(shape: Sequence[int]) -> str:
    """The solver ``method='auto'`` uses for a game with action counts ``shape`` (m_1, …, m_n).

    Two players: support enumeration while C(m_1+m_2, m_1) ≤ ``ENUM_LIMIT`` (every equilibrium), else
    Lemke–Howson. n players: support enumeration with root-finding while there are at most
    ``NPLAYER_DEFAULT`` support profiles, else the logit homotopy (one equilibrium).
    """
    ms = list(shape)
    if len(ms) == 2:
        small = math.comb(ms[0] + ms[1], ms[0]) <= ENUM_LIMIT
        return "support_enumeration" if small else "lemke_howson"
    small = math.prod(2**m - 1 for m in ms) <= NPLAYER_DEFAULT
    return "nplayer_support_enumeration" if small else "logit_homotopy"


# ---- selection ----------------------------------------------------------------------------------
def nash_equilibria(
    payoffs: np.ndarray,
    Lambda: np.ndarray | None = None,
    *,
    method: str = "auto",
    select: str = "welfare",
    **opts,
) -> FiniteEquilibria:
    """Exact Nash equilibria of the Λ-game of ``payoffs`` [n, m_1, …, m_n] (maximised), the selected one first.

    Selection (``select``) when there are several: ``"welfare"`` (default) the largest total *material*
    payoff Σ_i u_i(x) (payoff dominance; ties: the smaller total support, then the solver's order);
    ``"first"`` the solver's order (support sizes ascending, so pure equilibria first; Lemke–Howson: the one
    reached from label 0); ``"logit"`` the one the logit homotopy reaches (the limit of the principal branch
    of quantal-response equilibria, McKelvey & Palfrey 1995: risk dominance in 2×2 coordination games;
    added to the list if the solver missed it). ``FiniteEquilibria.profiles`` holds them all.
    """
    u = lambda_payoffs(payoffs)
    U = lambda_payoffs(u, Lambda)
    name = default_solver(U.shape[1:]) if method == "auto" else method
    choice("method", name, ["auto", *FINITE_SOLVERS])
    choice("select", select, SELECTIONS)
    res = FINITE_SOLVERS[name](U, **opts)
    if not res.profiles and name != "lemke_howson" and U.shape[0] == 2:
        res = lemke_howson(U)  # a numerically borderline game: every finite game has an equilibrium
    if not res.profiles and name != "logit_homotopy":
        res = logit_homotopy(U)
    if not res.profiles:
        raise ArithmeticError(
            f"{res.method}: no equilibrium found ({res.note or 'root-finding failed'})"
        )
    if select == "logit":
        lh = logit_homotopy(U) if name != "logit_homotopy" else res
        d = [
            max(np.abs(a - b).max() for a, b in zip(p, lh.profile, strict=True))
            for p in res.profiles
        ]
        if min(d) > 1e-6:
            res = FiniteEquilibria(
                [lh.profile, *res.profiles],
                res.method,
                res.complete,
                res.degenerate,
                [lh.regrets[0], *res.regrets],
                res.note,
            )
        else:
            k = int(np.argmin(d))
            res = FiniteEquilibria(
                [res.profiles[k], *res.profiles[:k], *res.profiles[k + 1 :]],
                res.method,
                res.complete,
                res.degenerate,
                [res.regrets[k], *res.regrets[:k], *res.regrets[k + 1 :]],
                res.note,
            )
    order = list(range(res.count))
    if select == "welfare":
        w = [float(expected_payoffs(u, p).sum()) for p in res.profiles]
        s = _scale(u) * 1e-9
        order.sort(
            key=lambda k: (-round(w[k] / s), sum(int((x > 0).sum()) for x in res.profiles[k]), k)
        )
    return FiniteEquilibria(
        [res.profiles[k] for k in order],
        res.method,
        res.complete,
        res.degenerate,
        [res.regrets[k] for k in order],
        res.note,
    )


# ---- learned dynamics (the second, labelled method) ---------------------------------------------
def _init_profile(U: np.ndarray, init: Sequence | None) -> Profile:
    if init is None:
        return [np.full(m, 1.0 / m) for m in U.shape[1:]]
    return [np.asarray(x, dtype=float) / np.sum(x) for x in init]


def _learn(
    U: np.ndarray, name: str, respond, steps: int, init: Sequence | None, tol: float
) -> LearnedPlay:
    """Run x_t = respond(t, payoffs against x̄_{t−1}) and the time average x̄_t = x̄_{t−1} + (x_t − x̄_{t−1})/(t+1)."""
    number("steps", steps, low=1, integer=True)
    n = U.shape[0]
    avg = _init_profile(U, init)
    D = [deviation_payoffs(U, avg, i) for i in range(n)]
    last, hist, vals = avg, [], []
    for t in range(1, steps + 1):
        last = respond(t, D)
        avg = [a + (b - a) / (t + 1) for a, b in zip(avg, last, strict=True)]
        D = [deviation_payoffs(U, avg, i) for i in range(n)]
        v = np.array([d @ x for d, x in zip(D, avg, strict=True)])
        hist.append(max(0.0, max(float(d.max() - e) for d, e in zip(D, v, strict=True))))
        vals.append(v)
        if hist[-1] <= tol:
            break
    return LearnedPlay(
        name,
        last,
        avg,
        float(regrets(U, last).max()),
        hist[-1],
        len(hist),
        np.array(hist),
        np.array(vals),
    )


def fictitious_play(
    U: np.ndarray, *, steps: int = 5000, init: Sequence | None = None, tol: float = 0.0
) -> LearnedPlay:
    """Simultaneous fictitious play: each player plays a pure best reply to the others' empirical frequencies.

    The time average (the empirical frequencies) converges to a Nash equilibrium in zero-sum, 2×2 and
    potential games (Robinson 1951, Miyasawa 1961, Monderer–Shapley 1996); the last iterate is pure and
    may cycle. Stops early when the average's largest regret is below ``tol``.
    """

    def respond(t: int, D: list[np.ndarray]) -> Profile:
        return [np.eye(d.size)[int(np.argmax(d))] for d in D]

    return _learn(U, "fictitious_play", respond, steps, init, tol)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def logit_play(
    U: np.ndarray,
    *,
    steps: int = 5000,
    init: Sequence | None = None,
    tau0: float = 1.0,
    power: float = 0.75,
    tau_min: float = 1e-4,
    tol: float = 0.0,
) -> LearnedPlay:
    """Entropy-regularised (logit) learning: smooth fictitious play x_i ← softmax(U_i(x̄_−i)/τ_t) against the time
    average x̄, with the temperature annealed τ_t = scale·max(τ_min, τ0/t^power) (scale: the payoff range).

    At a fixed τ its rest points are the logit quantal-response equilibria; as τ → 0 they trace the logit
    homotopy to a Nash equilibrium (McKelvey & Palfrey 1995). Reports the last logit response and x̄.
    """
    number("tau0", tau0, low=0.0, strict_low=True)
    number("tau_min", tau_min, low=0.0, strict_low=True)
    number("power", power, low=0.0, strict_low=True)
    sc = float(np.ptp(U)) or 1.0

    def respond(t: int, D: list[np.ndarray]) -> Profile:
        tau = sc * max(tau_min, tau0 / t**power)
        return [_softmax(d / tau) for d in D]

    return _learn(U, "logit", respond, steps, init, tol)


LEARNED_DYNAMICS: dict[str, Callable[..., LearnedPlay]] = {
    "fictitious_play": fictitious_play,
    "logit": logit_play,
}

"""The vectorisable elementary functions of kernels._fastmath against mpmath (50 digits)."""
import math

import mpmath as mp
import numba
import numpy as np
import pytest

from kernels._fastmath import (acos1m, acos1m_unit, asin_fast, gaps_of, h_of, h_unit, rho_of,
                               signed_gap, theta_unit)

mp.mp.dps = 50


def _theta(v):
    """arccos(1 - v) in mpmath without forming 1 - v (which rounds for tiny v)."""
    v = mp.mpf(float(v))
    return 2 * mp.asin(mp.sqrt(v / 2)) if v <= 1 else mp.acos(1 - v)


@numba.njit
def _map(f, e):
    out = np.empty_like(e)
    for i in range(e.shape[0]):
        out[i] = f(e[i])
    return out


@numba.njit
def _h_at(e):
    return h_of(acos1m(e), e)


def _acos1m_vec(e):
    return _map(acos1m, e)


def _acos1m_unit_vec(e):
    return _map(acos1m_unit, e)


def _asin_vec(x):
    return _map(asin_fast, x)


def _h_vec(e):
    return _map(_h_at, e)


def _gaps():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.uniform(0, 2, 3000), 10 ** rng.uniform(-300, 0, 2000),
                           2 - 10 ** rng.uniform(-15, 0, 500), [0.0, 0.375, 1.0, 1.625, 2.0]])


def test_acos1m_relative_accuracy():
    e = _gaps()
    got = _acos1m_vec(e)
    ref = np.array([float(_theta(v)) for v in e])
    nz = ref > 0
    assert np.all(got[~nz] == 0.0)
    assert np.max(np.abs(got[nz] - ref[nz]) / ref[nz]) < 5e-16


def test_acos1m_unit_matches_on_unit_interval():
    e = _gaps()
    e = e[e <= 1.0]
    got = _acos1m_unit_vec(e)
    ref = np.array([float(_theta(v)) for v in e])
    nz = ref > 0
    assert np.all(got[~nz] == 0.0)
    assert np.max(np.abs(got[nz] - ref[nz]) / ref[nz]) < 5e-16


def test_asin_fast_relative_accuracy():
    x = np.concatenate([np.random.default_rng(1).uniform(-1, 1, 3000), [-1.0, -0.625, 0.0,
                                                                         0.625, 1.0]])
    got = _asin_vec(x)
    ref = np.array([float(mp.asin(mp.mpf(float(v)))) for v in x])
    nz = ref != 0
    assert np.max(np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])) < 5e-16


def test_h_relative_accuracy_near_zero_and_everywhere():
    e = _gaps()
    e = e[e > 1e-200]                       # h ~ theta^3 underflows below that
    got = _h_vec(e)

    def h(v):
        t = _theta(v)
        if t < mp.mpf("1e-3"):       # the direct formula cancels like t^3 against t
            return t**3 / 3 - t**5 / 30 + t**7 / 840 - t**9 / 45360
        return mp.sin(t) - t * mp.cos(t)

    ref = np.array([float(h(v)) for v in e])
    assert np.max(np.abs(got - ref) / ref) < 2e-15


@numba.njit
def _theta_h_unit(a):
    t = np.empty_like(a)
    h = np.empty_like(a)
    for i in range(a.shape[0]):
        sa = math.sqrt(2.0 * a[i])
        t[i] = theta_unit(a[i], sa)
        h[i] = h_unit(a[i], sa)
    return t, h


def test_theta_h_unit_polynomials_relative_accuracy():
    """The engine's one-square-root forms (polynomials in a, no division) on [0, 1]."""
    e = _gaps()
    a = e[(e <= 1.0) & (e > 1e-200)]
    t, h = _theta_h_unit(a)

    def th(v):
        x = _theta(v)
        if x < mp.mpf("1e-3"):
            return x, x**3 / 3 - x**5 / 30 + x**7 / 840 - x**9 / 45360
        return x, mp.sin(x) - x * mp.cos(x)

    ref = [th(v) for v in a]
    rt = np.array([float(r[0]) for r in ref])
    rh = np.array([float(r[1]) for r in ref])
    # the bound of acos1m_unit (above), for both
    assert np.max(np.abs(t - rt) / rt) < 5e-16
    assert np.max(np.abs(h - rh) / rh) < 5e-16
    assert theta_unit(0.0, 0.0) == 0.0 and h_unit(0.0, 0.0) == 0.0


@pytest.mark.parametrize("rho", [1.0, 0.9, 0.0, -0.5, -1.0 + 1e-12, -1.0])
def test_signed_gap_round_trip(rho):
    e, w = 1.0 - rho, 1.0 + rho
    z = signed_gap(e, w)
    e2, w2 = gaps_of(z)
    assert rho_of(z) == pytest.approx(rho, abs=1e-16)
    assert min(e2, w2) == min(e, w)          # the smaller gap is stored exactly
    assert math.copysign(1.0, z) == (1.0 if e <= w else -1.0)    # -0.0 marks rho = -1

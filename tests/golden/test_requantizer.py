"""intdeploy.golden.requantizer against independent Python-int oracles (no numpy on the oracle side)."""

from fractions import Fraction
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.requantizer import (INT32_MAX, INT32_MIN, RequantParams, exact_multiplier, nemo_multiplier,
                                          nemo_shift_for_eta, quantize_multiplier, requantize, round_shift, rq, ties)

INT48 = (-(1 << 47), (1 << 47) - 1)


# --- oracles: plain Python ints ---------------------------------------------------------------

def wrap32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def c_div(a, b):
    """C/C++ integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed line by line."""
    overflow = a == b and a == INT32_MIN
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    ab_x2_high32 = c_div(ab_64 + nudge, 1 << 31)
    return INT32_MAX if overflow else ab_x2_high32


def rdbpot(x, exponent):
    """gemmlowp RoundingDivideByPOT, transcribed line by line."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x, quantized_multiplier, shift):
    """TFLite MultiplyByQuantizedMultiplier (double rounding); ``shift`` is TFLite's exponent."""
    left_shift = shift if shift > 0 else 0
    right_shift = 0 if shift > 0 else -shift
    return rdbpot(srdhm(wrap32(x * (1 << left_shift)), quantized_multiplier), right_shift)


def oracle(acc, mult, shift, rounding, bias=0, offset=0, zero_point=0, lo=INT32_MIN, hi=INT32_MAX):
    x = wrap32(acc + bias)
    if rounding == "tflite":
        q = mbqm(x, mult, 31 - shift)
    else:
        t = x * mult + offset
        if rounding == "floor":
            q = t // (1 << shift)
        elif rounding == "half_up":
            q = (t + (1 << (shift - 1))) >> shift if shift else t
        elif rounding == "half_away":
            f = Fraction(t, 1 << shift)
            q = math.floor(abs(f) + Fraction(1, 2)) * (1 if f >= 0 else -1)
        else:
            q = round(Fraction(t, 1 << shift))      # Python's round: half to even
    return min(max(q + zero_point, lo), hi)


def run(acc, **kw):
    """requantize on a list of accumulators, as Python ints."""
    return requantize(np.array(acc, dtype=np.int64), RequantParams(**kw)).tolist()


# --- the oracles are what they claim to be ---------------------------------------------------

def test_oracle_characterisation():
    """SRDHM is round-half-up of a*b/2**31 and RDBPOT round-half-away of x/2**e: the oracle
    transcription agrees with those closed forms (so a typo in the oracle would show here)."""
    rng = random.Random(1)
    vals = [INT32_MIN, INT32_MIN + 1, -3, -2, -1, 0, 1, 2, 3, INT32_MAX] + [rng.randint(INT32_MIN, INT32_MAX) for _ in range(200)]
    for a in vals:
        for b in (0, 1, 1 << 30, INT32_MAX, rng.randint(0, INT32_MAX)):
            assert srdhm(a, b) == (a * b + (1 << 30)) >> 31
        for e in range(0, 32):
            f = Fraction(a, 1 << e)
            away = math.floor(abs(f) + Fraction(1, 2)) * (1 if f >= 0 else -1)
            assert rdbpot(a, e) == away
    assert srdhm(INT32_MIN, INT32_MIN) == INT32_MAX


# --- tflite: double rounding ------------------------------------------------------------------

def _tflite_cases(shift, rng):
    right = shift - 31
    accs = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, (1 << 30), INT32_MAX - 1, INT32_MAX]
    if right >= 1:
        # With mult = 2**30 the high mul returns round_half_up(acc / 2); an acc of
        # (2k+1) * 2**right lands exactly half-way for RoundingDivideByPOT.
        accs += [s * (2 * k + 1) << right for k in (0, 1, 5) for s in (1, -1) if ((2 * k + 1) << right) <= INT32_MAX]
    accs += [2 * k + 1 for k in range(-4, 4)]                     # SRDHM ties with mult = 2**30
    accs += [rng.randint(INT32_MIN, INT32_MAX) for _ in range(40)]
    accs += [rng.randint(-1000, 1000) for _ in range(20)]
    mults = [0, 1, 1 << 30, INT32_MAX, rng.randint(1 << 30, INT32_MAX), rng.randint(0, INT32_MAX)]
    return accs, mults


@pytest.mark.parametrize("shift", range(1, 63))
def test_tflite_matches_gemmlowp(shift):
    rng = random.Random(shift)
    accs, mults = _tflite_cases(shift, rng)
    acc = np.array(accs, dtype=np.int64)[:, None].repeat(len(mults), axis=1)
    got = requantize(acc, RequantParams(mult=mults, shift=shift, rounding="tflite"))
    want = [[oracle(a, m, shift, "tflite") for m in mults] for a in accs]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64))


def test_tflite_cases_contain_ties():
    """The edge cases above really exercise RoundingDivideByPOT ties of both signs."""
    for shift in (33, 40, 61):
        accs, _ = _tflite_cases(shift, random.Random(0))
        right = shift - 31
        half = 1 << (right - 1)
        highs = [srdhm(a, 1 << 30) for a in accs]
        ties = [h for h in highs if h & ((1 << right) - 1) == half]
        assert any(h > 0 for h in ties) and any(h < 0 for h in ties)


@settings(max_examples=200, deadline=None)
@given(acc=st.integers(INT32_MIN, INT32_MAX), bias=st.integers(INT32_MIN, INT32_MAX),
       mult=st.integers(0, INT32_MAX), shift=st.integers(1, 62),
       zp=st.integers(-300, 300), lo=st.integers(-200, 0), hi=st.integers(0, 200))
def test_tflite_random(acc, bias, mult, shift, zp, lo, hi):
    kw = dict(mult=mult, shift=shift, bias=bias, zero_point=zp, lo=lo, hi=hi, rounding="tflite")
    assert run([acc], **kw) == [oracle(acc, **kw)]


# --- floor, half_up, half_even ------------------------------------------------------------------

@settings(max_examples=250, deadline=None)
@given(rounding=st.sampled_from(["floor", "half_up", "half_even", "half_away"]),
       acc=st.integers(INT32_MIN, INT32_MAX), bias=st.integers(INT32_MIN, INT32_MAX),
       mult=st.integers(INT32_MIN, INT32_MAX), offset=st.integers(*INT48), shift=st.integers(0, 62),
       zp=st.integers(INT32_MIN, INT32_MAX),
       lohi=st.tuples(st.integers(INT32_MIN, INT32_MAX), st.integers(INT32_MIN, INT32_MAX)).map(sorted))
def test_integer_modes_random(rounding, acc, bias, mult, offset, shift, zp, lohi):
    kw = dict(mult=mult, shift=shift, bias=bias, offset=offset, zero_point=zp, lo=lohi[0], hi=lohi[1], rounding=rounding)
    assert run([acc], **kw) == [oracle(acc, **kw)]


def _shift_cases(shift, rng):
    """Accumulator-times-mult products t for one shift: exact ties of both signs, their
    neighbours, the extremes of the int32 x int32 product, and random values."""
    ts = [0, 1, -1, INT32_MIN * INT32_MIN - 1, INT32_MIN * INT32_MAX, INT32_MAX * INT32_MAX]
    if shift:
        for k in (0, 1, 2, 3, 12345, (1 << max(61 - shift, 0)) - 1):
            tie = (2 * k + 1) << (shift - 1)
            ts += [tie, -tie, tie + 1, -tie - 1, tie - 1, -tie + 1]
    ts += [rng.randint(INT32_MIN * INT32_MAX, INT32_MAX * INT32_MAX) for _ in range(30)]
    return [t for t in ts if abs(t) <= 1 << 62]


@pytest.mark.parametrize("shift", range(0, 63))
def test_round_shift_vs_python(shift):
    ts = _shift_cases(shift, random.Random(shift))
    t = np.array(ts, dtype=np.int64)
    np.testing.assert_array_equal(round_shift(t, shift, "floor"), [v // (1 << shift) for v in ts])
    want_up = [(v + (1 << (shift - 1))) >> shift if shift else v for v in ts]
    np.testing.assert_array_equal(round_shift(t, shift, "half_up"), want_up)
    np.testing.assert_array_equal(round_shift(t, shift, "half_even"), [round(Fraction(v, 1 << shift)) for v in ts])


@pytest.mark.parametrize("shift", range(0, 63))
def test_requantize_half_modes_every_shift(shift):
    """Through requantize (mult, bias, offset), every shift, against the Python formulas."""
    rng = random.Random(100 + shift)
    accs = [INT32_MIN, INT32_MAX, -1, 0, 1] + [rng.randint(INT32_MIN, INT32_MAX) for _ in range(20)]
    if shift:
        accs += [s * (2 * k + 1) << (shift - 1) for k in (0, 1, 7) for s in (1, -1)
                 if ((2 * k + 1) << (shift - 1)) <= INT32_MAX]       # ties with mult 1, offset 0
    for rounding in ("floor", "half_up", "half_even", "half_away"):
        for mult, offset in ((1, 0), (INT32_MIN, INT48[1]), (INT32_MAX, INT48[0]), (rng.randint(INT32_MIN, INT32_MAX), 12345)):
            kw = dict(mult=mult, shift=shift, offset=offset, rounding=rounding)
            assert run(accs, **kw) == [oracle(a, **kw) for a in accs], (rounding, mult, offset)


def test_half_even_and_half_up_differ_exactly_at_ties():
    t = np.arange(-200, 201, dtype=np.int64)
    for shift in range(1, 7):
        up = requantize(t, RequantParams(mult=1, shift=shift, rounding="half_up"))
        even = requantize(t, RequantParams(mult=1, shift=shift, rounding="half_even"))
        tie = (t % (1 << shift)) == (1 << (shift - 1))
        np.testing.assert_array_equal(up[~tie], even[~tie])
        # At a tie half_up goes to the upper neighbour, half_even to the even one.
        lower = t[tie] >> shift
        np.testing.assert_array_equal(up[tie], lower + 1)
        np.testing.assert_array_equal(even[tie], np.where(lower % 2 == 0, lower, lower + 1))
        assert np.count_nonzero(up != even) == np.count_nonzero(tie) // 2


def test_half_away_and_half_up_differ_exactly_at_negative_ties():
    """Ties away from zero (LiteRT's reference FULLY_CONNECTED) and ties toward +inf agree
    everywhere but at the negative exact ties, where half_away goes one lower."""
    t = np.arange(-200, 201, dtype=np.int64)
    for shift in range(1, 7):
        up = requantize(t, RequantParams(mult=1, shift=shift, rounding="half_up"))
        away = requantize(t, RequantParams(mult=1, shift=shift, rounding="half_away"))
        negative_tie = (t < 0) & ((t % (1 << shift)) == (1 << (shift - 1)))
        np.testing.assert_array_equal(away[~negative_tie], up[~negative_tie])
        np.testing.assert_array_equal(away[negative_tie], up[negative_tie] - 1)
        assert negative_tie.any()
    assert run([3, -3, -1, 1, -2], mult=1, shift=1, rounding="half_away") == [2, -2, -1, 1, -1]
    assert run([-5], mult=1, shift=0, rounding="half_away") == [-5]          # no rounding at shift 0


def tie_oracle(acc, mult, shift, rounding, bias=0, offset=0):
    """An exact .5 in the rounding step(s), with Fractions: one step for floor / half_up /
    half_even; gemmlowp's two for tflite (the doubled product over 2**31, then its
    SaturatingRoundingDoublingHighMul result over 2**(shift - 31))."""
    x = wrap32(acc + bias)
    if rounding != "tflite":
        return Fraction(x * mult + offset, 1 << shift) % 1 == Fraction(1, 2)
    left, right = max(31 - shift, 0), max(shift - 31, 0)
    a = wrap32(x * (1 << left))
    if Fraction(2 * a * mult, 1 << 32) % 1 == Fraction(1, 2):
        return True
    return right > 0 and Fraction(srdhm(a, mult), 1 << right) % 1 == Fraction(1, 2)


@settings(max_examples=300, deadline=None)
@given(rounding=st.sampled_from(["floor", "half_up", "half_even", "tflite", "half_away"]), data=st.data())
def test_ties_against_fractions(rounding, data):
    """golden.requantizer.ties (the one tie detector: the driver's classifier, coverage and the
    cross-check use it) against exact rationals, with inputs biased towards ties."""
    shift = data.draw(st.integers(1, 62) if rounding == "tflite" else st.integers(0, 62))
    mult = data.draw(st.sampled_from([1 << 30, 3 << 28, 1]) | st.integers(0 if rounding == "tflite" else -(1 << 31),
                                                                             INT32_MAX))
    bias = data.draw(st.integers(-1000, 1000))
    offset = 0 if rounding == "tflite" else data.draw(st.integers(*INT48))
    accs = data.draw(st.lists(st.integers(INT32_MIN, INT32_MAX) | st.integers(-4096, 4096), min_size=1, max_size=20))
    want = [tie_oracle(a, mult, shift, rounding, bias, offset) for a in accs]
    got = ties(np.array(accs), RequantParams(mult=mult, shift=shift, rounding=rounding, bias=bias, offset=offset))
    assert got.tolist() == want


def test_ties_are_where_the_modes_disagree():
    """Every accumulator on which half_up and half_even give different results is a tie, and on
    these small shifts ties are common (so the statement is not empty)."""
    acc = np.arange(-5000, 5000)
    for shift in (1, 2, 5):
        p = dict(mult=3, shift=shift, bias=7)
        up = requantize(acc, RequantParams(rounding="half_up", **p))
        even = requantize(acc, RequantParams(rounding="half_even", **p))
        tie = ties(acc, RequantParams(rounding="half_up", **p))
        assert np.all(tie[up != even]) and tie.sum() > 100 and (up != even).sum() > 0


def test_zero_point_is_added_after_rounding():
    # 1/2 rounds (half to even) to 0, then + 1. Adding the zero point first would round 3/2 to 2.
    assert run([1], mult=1, shift=1, zero_point=1, rounding="half_even") == [1]
    assert run([3], mult=1, shift=1, zero_point=-1, rounding="half_even") == [1]     # 3/2 -> 2, -1
    assert run([1], mult=1, shift=1, zero_point=1, rounding="half_up") == [2]       # 1/2 -> 1, +1
    # tflite: 3 * 2**30 / 2**31 = 1.5 -> SRDHM 2 -> RDBPOT(2, 1) = 1, then + 1.
    assert run([3], mult=1 << 30, shift=32, zero_point=1, rounding="tflite") == [2]


def test_clipping():
    accs = list(range(-300, 301, 7))
    got = run(accs, mult=1, shift=0, lo=-128, hi=127)
    assert got == [min(max(a, -128), 127) for a in accs]
    assert run([5, 6, 7], mult=1, shift=0, lo=6, hi=6) == [6, 6, 6]


def test_int32_wrap_of_acc_plus_bias():
    assert run([INT32_MAX], mult=1, shift=0, bias=1) == [INT32_MIN]
    assert run([INT32_MIN], mult=1, shift=0, bias=-1) == [INT32_MAX]
    assert run([INT32_MAX], mult=1, shift=0, bias=INT32_MAX, rounding="half_even") == [-2]
    assert run([INT32_MAX], mult=1 << 30, shift=31, bias=1, rounding="tflite") == [mbqm(INT32_MIN, 1 << 30, 0)]


@pytest.mark.parametrize("rounding", ["floor", "half_up", "half_even", "tflite", "half_away"])
def test_per_channel_broadcast(rounding):
    rng = np.random.default_rng(7)
    c = 5
    tfl = rounding == "tflite"
    fields = dict(
        mult=rng.integers(0 if tfl else INT32_MIN, INT32_MAX, c, endpoint=True),
        shift=rng.integers(31 if tfl else 0, 62, c, endpoint=True),
        bias=rng.integers(-1000, 1000, c),
        offset=np.zeros(c, dtype=np.int64) if tfl else rng.integers(-(1 << 40), 1 << 40, c),
        zero_point=rng.integers(-10, 10, c),
        lo=np.full(c, -(1 << 20)), hi=rng.integers(0, 1 << 20, c),
    )
    acc = rng.integers(INT32_MIN, INT32_MAX, (3, 4, c), endpoint=True)
    got = requantize(acc, RequantParams(**fields, rounding=rounding))
    for ch in range(c):
        kw = {k: int(v[ch]) for k, v in fields.items()}
        want = [oracle(int(a), rounding=rounding, **kw) for a in acc[..., ch].ravel()]
        np.testing.assert_array_equal(got[..., ch].ravel(), want)


# --- parameter helpers ------------------------------------------------------------------------

def _tflite_quantize_multiplier(real):
    """TFLite QuantizeMultiplier (exponent form) from its definition, with exact rationals."""
    if real == 0:
        return 0, 0
    frac, exp = math.frexp(real)
    v = Fraction(frac) * (1 << 31)
    q = math.floor(v + Fraction(1, 2))              # std::round: half away from zero (v > 0)
    if q == 1 << 31:
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 0
    if exp > 30:
        return (1 << 31) - 1, 30
    return q, exp


@settings(max_examples=200, deadline=None)
@given(real=st.floats(min_value=2.0 ** -40, max_value=2.0 ** 29, allow_subnormal=False))
def test_quantize_multiplier_vs_tflite(real):
    q, exp = _tflite_quantize_multiplier(real)
    mult, shift = quantize_multiplier(real)
    if q == 0:
        assert mult == 0
    else:
        assert (mult, shift) == (q, 31 - exp)
        assert (1 << 30) <= mult < (1 << 31)
        assert abs(Fraction(mult, 1 << shift) - Fraction(real)) <= Fraction(real) / (1 << 31)


def test_quantize_multiplier_edges():
    # frac * 2**31 rounds up to 2**31: TFLite halves it and bumps the exponent.
    real = 1.0 - 2.0 ** -40
    assert quantize_multiplier(real) == (1 << 30, 30)        # exponent 1 -> shift 30
    assert _tflite_quantize_multiplier(real) == (1 << 30, 1)
    assert quantize_multiplier(0.5) == (1 << 30, 31)
    assert quantize_multiplier(0.0)[0] == 0
    assert quantize_multiplier(2.0 ** -33)[0] == 0            # exponent < -31 flushes to zero
    assert quantize_multiplier(2.0 ** 40) == ((1 << 31) - 1, 1)  # exponent > 30 saturates
    # Round half away from zero at the 31st fractional bit: 0.5 + 2**-32 = frac with a tie.
    assert quantize_multiplier(0.5 + 2.0 ** -32) == ((1 << 30) + 1, 31)
    for bad in (-1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="^real"):
            quantize_multiplier(bad)


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(min_value=2.0 ** -30, max_value=2.0 ** 20, width=32, allow_subnormal=False))
def test_exact_multiplier_roundtrips_float32(scale):
    mult, shift = exact_multiplier(scale)
    assert Fraction(mult, 1 << shift) == Fraction(float(np.float32(scale)))
    assert -(1 << 31) <= mult < (1 << 31)
    # Applying it is an exact multiply by the scale, then rounding once.
    acc = [1000, -777, 1, -1]                               # |acc * scale| < 2**31
    got = requantize(np.array(acc), RequantParams(mult=mult, shift=shift, rounding="half_even"))
    assert got.tolist() == [round(a * Fraction(float(scale))) for a in acc]


def test_exact_multiplier_refuses_inexact():
    with pytest.raises(ValueError, match="^real"):
        exact_multiplier(2.0 ** -70)
    with pytest.raises(ValueError, match="^real"):
        exact_multiplier(1 + 2.0 ** -40, mult_bits=32)      # needs 42 bits
    assert exact_multiplier(1 + 2.0 ** -40, mult_bits=48) == ((1 << 40) + 1, 40)


@settings(max_examples=200, deadline=None)
@given(eps_in=st.floats(1e-6, 1.0), ratio=st.floats(1e-3, 1e3), eta=st.floats(1e-4, 0.5))
def test_rq_relative_error_within_eta(eps_in, ratio, eta):
    eps_out = eps_in * ratio
    d = nemo_shift_for_eta(eps_in, eps_out, eta)
    exact = Fraction(eps_in) / Fraction(eps_out)
    # Eq. 14: D = 2**d is the smallest power of two >= eps_out / (eps_in * eta).
    bound = Fraction(eps_out) / (Fraction(eps_in) * Fraction(eta))
    assert (1 << d) >= bound and (d == 0 or (1 << (d - 1)) < bound)
    factor = int(rq(np.array([1 << d]), eps_in, eps_out, d)[0])      # factor * 2**d >> d
    assert factor == math.floor(exact * (1 << d))
    assert abs(exact - Fraction(factor, 1 << d)) / exact <= Fraction(eta)
    qs = [-(1 << 20), -12345, -1, 0, 1, 777, (1 << 20)]
    got = rq(np.array(qs), eps_in, eps_out, d).tolist()
    for q, g in zip(qs, got):
        assert g == (q * factor) // (1 << d)
        assert abs(g - q * exact) <= Fraction(eta) * abs(q) * exact + 1


@settings(max_examples=200, deadline=None)
@given(eps_in=st.floats(1e-6, 1.0), ratio=st.floats(1e-3, 1e3), rf=st.sampled_from([1, 16, 32, 256]))
def test_nemo_multiplier(eps_in, ratio, rf):
    eps_out = eps_in * ratio
    mult, d = nemo_multiplier(eps_in, eps_out, rf)
    exact = Fraction(eps_in) / Fraction(eps_out)
    assert (1 << d) >= rf / exact and (d == 0 or (1 << (d - 1)) < rf / exact)
    assert mult == round(exact * (1 << d))
    # mult >= rf / 1 roughly, so the rounding error of mult / D relative to the ratio is <= 1/(2 rf).
    assert abs(Fraction(mult, 1 << d) - exact) / exact <= Fraction(1, 2 * rf)


# --- validation -------------------------------------------------------------------------------

BAD_FIELDS = [
    ("mult", dict(mult=1 << 31)), ("mult", dict(mult=INT32_MIN - 1)),
    ("mult", dict(mult=-1, rounding="tflite")), ("mult", dict(mult=1.5)), ("mult", dict(mult="7")),
    ("mult", dict(mult=[[1, 2]])),
    ("shift", dict(shift=63)), ("shift", dict(shift=-1)), ("shift", dict(shift=0, rounding="tflite")),
    ("shift", dict(shift=2.0)), ("shift", dict(shift=np.zeros((2, 2), dtype=int))),
    ("bias", dict(bias=1 << 31)), ("bias", dict(bias=INT32_MIN - 1)), ("bias", dict(bias=0.5)),
    ("bias", dict(bias=[[0]])),
    ("offset", dict(offset=1 << 47)), ("offset", dict(offset=-(1 << 47) - 1)),
    ("offset", dict(offset=1, rounding="tflite")), ("offset", dict(offset=np.float32(1))),
    ("zero_point", dict(zero_point=1 << 31)), ("zero_point", dict(zero_point=[[1]])),
    ("zero_point", dict(zero_point=1.0)),
    ("lo", dict(lo=INT32_MIN - 1)), ("lo", dict(lo=[[0]])), ("lo", dict(lo=0.0)),
    ("hi", dict(hi=1 << 31)), ("hi", dict(hi="x")),
    ("lo, hi", dict(lo=5, hi=4)),
    ("rounding", dict(rounding="nearest")), ("rounding", dict(rounding=["floor"])),
    ("mult, shift", dict(mult=[1, 2], shift=[1, 2, 3])),
]


@pytest.mark.parametrize("field, override", BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_FIELDS)])
def test_bad_params_name_the_field(field, override):
    kw = dict(mult=1, shift=31) | override
    with pytest.raises(ValueError, match=f"^{field}:"):
        RequantParams(**kw)


def test_requantize_bad_inputs():
    p = RequantParams(mult=[1, 2, 3], shift=1)
    with pytest.raises(ValueError, match="^acc:"):
        requantize(np.zeros((4, 2), dtype=np.int64), p)
    with pytest.raises(ValueError, match="^acc:"):
        requantize(np.array([1 << 31, 0, 0]), p)
    with pytest.raises(ValueError, match="^acc:"):
        requantize(np.array([0.0, 0.0, 0.0]), p)
    with pytest.raises(ValueError, match="^params:"):
        requantize(np.zeros(3, dtype=np.int64), {"mult": 1})
    with pytest.raises(ValueError, match="^shift:"):
        round_shift(np.array([5]), 63, "floor")
    with pytest.raises(ValueError, match="^rounding:"):
        round_shift(np.array([5]), 1, "tflite")
    with pytest.raises(ValueError, match="^d:"):
        rq([1], 1.0, 2.0, 63)
    with pytest.raises(ValueError, match="^eps_out:"):
        rq([1], 1.0, 0.0, 3)
    with pytest.raises(ValueError, match="^eta:"):
        nemo_shift_for_eta(1.0, 1.0, -0.1)

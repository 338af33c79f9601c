"""intdeploy.golden.add against Python-int transcriptions of NEMO's and TFLite's integer Add."""

from fractions import Fraction
import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.add import AddParams, add
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams, requantize


def wrap32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# --- NEMO -------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(ma=st.integers(-(1 << 22), 1 << 22), mb=st.integers(-(1 << 22), 1 << 22), d=st.integers(0, 31),
       clip=st.one_of(st.none(), st.tuples(st.integers(-300, 0), st.integers(0, 300))),
       ab=st.lists(st.tuples(st.integers(-128, 255), st.integers(-128, 255)), min_size=1, max_size=40))
def test_nemo_vs_python(ma, mb, d, clip, ab):
    lo, hi = clip if clip else (None, None)
    p = AddParams.nemo(ma, mb, d, lo=lo, hi=hi)
    a = np.array([v for v, _ in ab])
    b = np.array([v for _, v in ab])
    want = [(ma * x + mb * y) // (1 << d) for x, y in ab]           # floor, like >> d
    if clip:
        want = [min(max(v, lo), hi) for v in want]
    assert add(a, b, p).tolist() == want


def test_nemo_floor_for_negatives_and_no_default_clip():
    p = AddParams.nemo(3, 5, 2)
    assert add([[-1, 100]], [[0, 100]], p).tolist() == [[-1, 200]]     # -3/4 -> -1; 800/4 unclipped


def test_nemo_refuses_int32_overflow():
    AddParams.nemo((1 << 31) // 256 - 1, 0, 4)                           # 255 * m fits
    AddParams.nemo(1 << 22, 1 << 22, 4)                                  # 2 * 255 * 2**22 < 2**31
    with pytest.raises(ValueError, match="^mult_a:"):
        AddParams.nemo(1 << 24, 1, 4)                                    # 255 * 2**24 > 2**31
    with pytest.raises(ValueError, match="^mult_b:"):
        AddParams.nemo(1, -(1 << 24), 4)
    with pytest.raises(ValueError, match="^mult_a, mult_b:"):
        AddParams.nemo(5 << 20, 5 << 20, 4)                              # each fits, the sum does not
    with pytest.raises(ValueError, match="^d:"):
        AddParams.nemo(1, 1, 32)
    with pytest.raises(ValueError, match="^mult_a:"):
        AddParams.nemo(1.5, 1, 3)


# --- TFLite -----------------------------------------------------------------------------------

def q_multiplier(real):
    """TFLite QuantizeMultiplier -> (quantized_multiplier, exponent), exact rationals."""
    frac, exp = math.frexp(real)
    q = math.floor(Fraction(frac) * (1 << 31) + Fraction(1, 2))       # std::round, positive
    if q == 1 << 31:
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 0
    return q, exp


def mbqm_smaller_than_one(x, m, exponent):
    """MultiplyByQuantizedMultiplierSmallerThanOneExp, from the closed forms of its two gemmlowp
    steps: SaturatingRoundingDoublingHighMul = floor((x*m + 2**30) / 2**31) (round half up; no
    saturation since m >= 0) and RoundingDivideByPOT = round half away from zero."""
    assert exponent <= 0
    high = (x * m + (1 << 30)) >> 31
    f = Fraction(high, 1 << -exponent)
    return int(math.floor(abs(f) + Fraction(1, 2))) * (1 if f >= 0 else -1)


def tflite_prepare(scale_a, scale_b, scale_out):
    """TFLite add.cc Prepare for int8: scales are float32 in the model, arithmetic in double.
    Returns ((m1, e1), (m2, e2), (mo, eo)) as QuantizeMultiplierSmallerThanOneExp gives them."""
    s1, s2, so = (float(np.float32(v)) for v in (scale_a, scale_b, scale_out))
    left_shift = 20
    twice_max_input_scale = 2 * max(s1, s2)
    real_input1_multiplier = s1 / twice_max_input_scale
    real_input2_multiplier = s2 / twice_max_input_scale
    real_output_multiplier = twice_max_input_scale / ((1 << left_shift) * so)
    return tuple(q_multiplier(r) for r in (real_input1_multiplier, real_input2_multiplier, real_output_multiplier))


def tflite_add_reference(a, b, scale_a, zp_a, scale_b, zp_b, scale_out, zp_out, act_min, act_max):
    """TFLite reference_ops integer_ops AddElementwise for int8, element by element."""
    (m1, e1), (m2, e2), (mo, eo) = tflite_prepare(scale_a, scale_b, scale_out)
    input1_offset, input2_offset, output_offset = -zp_a, -zp_b, zp_out
    left_shift = 20
    out = []
    for x1, x2 in zip(a, b):
        input1_val = input1_offset + x1
        input2_val = input2_offset + x2
        shifted_input1_val = input1_val * (1 << left_shift)
        shifted_input2_val = input2_val * (1 << left_shift)
        scaled_input1_val = mbqm_smaller_than_one(shifted_input1_val, m1, e1)
        scaled_input2_val = mbqm_smaller_than_one(shifted_input2_val, m2, e2)
        raw_sum = scaled_input1_val + scaled_input2_val
        raw_output = mbqm_smaller_than_one(raw_sum, mo, eo) + output_offset
        out.append(min(act_max, max(act_min, raw_output)))
    return out


@settings(max_examples=60, deadline=None)
@given(la=st.floats(-12, 2), lb=st.floats(-12, 2), lo_=st.floats(-4, 4),
       zps=st.tuples(*[st.integers(-128, 127)] * 3), relu=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_tflite_vs_reference(la, lb, lo_, zps, relu, seed):
    scale_a, scale_b = 2.0 ** la, 2.0 ** lb
    scale_out = max(scale_a, scale_b) * 2.0 ** lo_
    zp_a, zp_b, zp_out = zps
    act_min = max(-128, zp_out) if relu else -128
    p = AddParams.tflite(scale_a, zp_a, scale_b, zp_b, scale_out, zp_out, lo=act_min, hi=127)
    rng = np.random.default_rng(seed)
    a = np.concatenate([[-128, 127, -128, 127, zp_a], rng.integers(-128, 127, 300, endpoint=True)])
    b = np.concatenate([[-128, 127, 127, -128, zp_b], rng.integers(-128, 127, 300, endpoint=True)])
    want = tflite_add_reference(a.tolist(), b.tolist(), scale_a, zp_a, scale_b, zp_b, scale_out, zp_out, act_min, 127)
    assert add(a, b, p).tolist() == want
    # the multipliers themselves, bit for bit (output differences from a wrong multiplier LSB are rare)
    got = [(int(r.mult), 31 - int(r.shift)) for r in (*p.branches, p.output)]
    assert got == list(tflite_prepare(scale_a, scale_b, scale_out))


def test_tflite_all_pairs_one_model():
    """Every int8 pair for one realistic parameter set (ResNet-style residual add)."""
    args = (0.0235294, -128, 0.0470588, -5, 0.0392157, -17)
    p = AddParams.tflite(*args)
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    got = add(a.ravel(), b.ravel(), p)
    want = tflite_add_reference(a.ravel().tolist(), b.ravel().tolist(), *args, -128, 127)
    np.testing.assert_array_equal(got, want)
    # and it is a sane add: within 1 LSB of the real-valued result
    real = (args[0] * (a.ravel() + 128) + args[2] * (b.ravel() + 5)) / args[4] - 17
    inside = (real > -127) & (real < 126)
    assert np.max(np.abs(got[inside] - real[inside])) <= 1


def test_tflite_params_follow_prepare():
    p = AddParams.tflite(0.5, 1, 0.25, 2, 0.125, 3)
    assert p.left_shift == 20 and p.in_zero_points == (1, 2)
    # real multipliers 0.5 and 0.25 -> Q31 2**30 with exponents 0 and -1 -> shifts 31, 32
    assert [(int(b.mult), int(b.shift)) for b in p.branches] == [(1 << 30, 31), (1 << 30, 32)]
    # real output = 1 / (2**20 * 0.125) = 2**-17 -> 2**30 with exponent -16 -> shift 47
    assert (int(p.output.mult), int(p.output.shift), int(p.output.zero_point)) == (1 << 30, 47, 3)
    assert all(b.rounding == "tflite" for b in p.branches) and p.output.rounding == "tflite"


def test_tflite_refuses_what_tflite_refuses():
    with pytest.raises(ValueError, match="^scale_out:"):
        AddParams.tflite(1.0, 0, 1.0, 0, 2.0 ** -21, 0)     # real output multiplier >= 1
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="^scale_a:"):
            AddParams.tflite(bad, 0, 1.0, 0, 1.0, 0)


# --- the general form -------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(ls=st.integers(0, 31), zps=st.tuples(st.integers(INT32_MIN, INT32_MAX), st.integers(INT32_MIN, INT32_MAX)),
       rounding=st.sampled_from(["floor", "half_up", "half_even", "tflite"]), mults=st.tuples(*[st.integers(0, INT32_MAX)] * 3),
       shifts=st.tuples(*[st.integers(31, 62)] * 3),
       xs=st.lists(st.tuples(st.integers(INT32_MIN, INT32_MAX), st.integers(INT32_MIN, INT32_MAX)), min_size=1, max_size=20),
       ss=st.integers(0, 31))
def test_general_form_wraps(ls, zps, rounding, mults, shifts, xs, ss):
    """(x - zp) << left_shift and the branch sum wrap to int32, the sum is floor-shifted by
    sum_shift, the branches and output are requantizers: built here from Python ints around
    intdeploy.golden.requantizer."""
    rq = [RequantParams(mult=m, shift=s, rounding=rounding) for m, s in zip(mults, shifts)]
    p = AddParams(in_zero_points=zps, left_shift=ls, branches=(rq[0], rq[1]), output=rq[2], sum_shift=ss)
    a = [x for x, _ in xs]
    b = [y for _, y in xs]
    want = []
    for x, y in xs:
        v = [int(requantize(np.array(wrap32((u - zp) << ls)), r)) for u, zp, r in zip((x, y), zps, rq)]
        want.append(int(requantize(np.array(wrap32(v[0] + v[1]) >> ss), rq[2])))
    assert add(np.array(a), np.array(b), p).tolist() == want


def test_sum_shift_is_a_floor_division():
    one = RequantParams(mult=1, shift=0)
    p = AddParams(branches=(one, one), output=one, sum_shift=2)
    assert add([-9, -8, 7, INT32_MAX], [0, 0, 0, 1], p).tolist() == [-3, -2, 1, -(1 << 29)]


@settings(max_examples=100, deadline=None)
@given(mults=st.tuples(st.integers(0, 1 << 15), st.integers(0, 1 << 15)), d=st.integers(0, 40),
       rq=st.tuples(st.integers(0, INT32_MAX), st.integers(1, 62), st.sampled_from(["floor", "half_up", "half_even", "tflite"]),
                    st.integers(-1000, 1000), st.integers(-300, 300)),
       xs=st.lists(st.tuples(st.integers(-128, 255), st.integers(-128, 255)), min_size=1, max_size=30))
def test_then_is_the_add_followed_by_the_requantizer(mults, d, rq, xs):
    """NEMO's Add (output: floor division by 2**d, no clamp) then an activation requantizer
    equals one AddParams whose sum_shift is d (31 at most) and whose output is that requantizer."""
    mult, shift, rounding, zp, lo = rq
    nxt = RequantParams(mult=mult, shift=max(shift, 31) if rounding == "tflite" else shift, rounding=rounding,
                        zero_point=zp, lo=lo, hi=lo + 255)
    p = AddParams(branches=(RequantParams(mult=mults[0], shift=0), RequantParams(mult=mults[1], shift=0)),
                  output=RequantParams(mult=1, shift=d, rounding="floor"))
    a, b = np.array([x for x, _ in xs]), np.array([y for _, y in xs])
    fused = p.then(nxt)
    assert fused.sum_shift == min(d, 31) and fused.output is nxt
    assert add(a, b, fused).tolist() == requantize(add(a, b, p), nxt).tolist()


def test_then_refuses_an_output_that_is_not_a_plain_division():
    nxt = RequantParams(mult=3, shift=2)
    one = RequantParams(mult=1, shift=0)
    for out in (RequantParams(mult=2, shift=4), RequantParams(mult=1, shift=4, rounding="half_up"),
                RequantParams(mult=1, shift=4, bias=1), RequantParams(mult=1, shift=4, zero_point=1),
                RequantParams(mult=1, shift=4, lo=0), RequantParams(mult=1, shift=4, offset=1)):
        assert AddParams(branches=(one, one), output=out).then(nxt) is None
    assert AddParams(branches=(one, one), output=RequantParams(mult=1, shift=4), sum_shift=1).then(nxt) is None
    assert AddParams.tflite(0.5, 0, 0.25, 0, 1.0, 0).then(nxt) is None
    assert AddParams(branches=(one, one), output=RequantParams(mult=1, shift=0, rounding="half_even")).then(nxt).sum_shift == 0


def test_sum_wraps_in_int32():
    one = RequantParams(mult=1, shift=0)
    p = AddParams(branches=(one, one), output=one)
    assert add([INT32_MAX], [1], p).tolist() == [INT32_MIN]
    p = AddParams(left_shift=31, branches=(one, one), output=one)
    assert add([1, 2, 3], [0, 0, 0], p).tolist() == [INT32_MIN, 0, INT32_MIN]


@pytest.mark.parametrize("kw, name", [
    (dict(in_zero_points=(0,)), "in_zero_points"), (dict(in_zero_points=(0, 1 << 31)), "in_zero_points"),
    (dict(in_zero_points=(0.5, 0)), "in_zero_points"), (dict(left_shift=32), "left_shift"),
    (dict(left_shift=-1), "left_shift"), (dict(left_shift=1.0), "left_shift"),
    (dict(sum_shift=32), "sum_shift"), (dict(sum_shift=-1), "sum_shift"), (dict(sum_shift=True), "sum_shift"),
    (dict(branches=(1, 2)), "branches"), (dict(branches=None), "branches"), (dict(output=3), "output"),
])
def test_bad_params(kw, name):
    one = RequantParams(mult=1, shift=0)
    args = dict(branches=(one, one), output=one) | kw
    with pytest.raises(ValueError, match=f"^{name}:"):
        AddParams(**args)


def test_add_bad_inputs():
    one = RequantParams(mult=1, shift=0)
    p = AddParams(branches=(one, one), output=one)
    with pytest.raises(ValueError, match="^a, b:"):
        add(np.zeros(3, dtype=np.int64), np.zeros(4, dtype=np.int64), p)
    with pytest.raises(ValueError, match="^a:"):
        add(np.zeros(3), np.zeros(3, dtype=np.int64), p)
    with pytest.raises(ValueError, match="^b:"):
        add(np.zeros(1, dtype=np.int64), np.array([1 << 31]), p)
    with pytest.raises(ValueError, match="^params:"):
        add(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), one)
